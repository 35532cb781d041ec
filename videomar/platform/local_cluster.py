"""``videomar up`` / ``videomar down``: a local Ray head, an MLflow server and (optionally) an S3
server on loopback, run as real processes.

``up`` starts them, each in its own session, records their PIDs and start times in
``<state-dir>/cluster.json``, and writes their addresses to ``<state-dir>/env``, from which the
job commands take their defaults. The Ray head is started with those addresses in its
environment, so jobs submitted to it log to that MLflow server and reach that S3 server. ``down``
stops exactly the recorded processes (and their process groups), nothing found by name.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from videomar.artifacts import storage
from videomar.artifacts.storage import atomic_path
from videomar.platform import processes
from videomar.platform.envfile import ENV_FILE_NAME, write_env_file
from videomar.platform.processes import ProcessError, ProcessRecord

STATE_FILE_NAME = "cluster.json"
TOKEN_FILE_NAME = "ray_auth_token"
# Start-up limits on a busy machine: a Ray head imports a lot before its dashboard answers.
RAY_START_TIMEOUT_S = 120.0
SERVER_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class UpSettings:
    """What ``videomar up`` starts; a port of 0 means any free port."""

    state_dir: Path
    ray_port: int = 6379
    dashboard_port: int = 8265
    mlflow_port: int = 5000
    s3: bool = False
    s3_port: int = 9000
    bucket: str = "videomar"
    num_cpus: int | None = None
    object_store_mb: int | None = None
    auth: bool = True


@dataclass(frozen=True)
class RayHead:
    record: ProcessRecord
    gcs_address: str  # for ray.init / `videomar run` (RAY_ADDRESS)
    dashboard_url: str  # for the Jobs API (RAY_API_SERVER_ADDRESS)
    temp_dir: str


def executable(name: str) -> str:
    """A console script installed beside this Python (the venv's), else one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ProcessError(f"{name} is not installed in {Path(sys.executable).parent} or on PATH")
    return found


def pick_port(port: int, what: str) -> int:
    if port == 0:
        return processes.free_port()
    if processes.port_in_use(port):
        raise ProcessError(f"{what}: port {port} on 127.0.0.1 is in use; choose another, or 0 for any free port")
    return port


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers or {})), timeout=2) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def head_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a Ray head: this one, this Python's bin dir first on PATH (job
    entrypoints run `videomar`), and ``extra`` (addresses, auth settings) that jobs inherit."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray drains a node on SIGTERM, up to 30 s, for Serve to move replicas: our heads have nowhere to.
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    env.update(extra)
    return env


def start_ray_head(
    log: Path,
    env: Mapping[str, str],
    port: int = 0,
    dashboard_port: int = 0,
    num_cpus: int | None = None,
    object_store_mb: int | None = None,
    token: str | None = None,
    timeout_s: float = RAY_START_TIMEOUT_S,
) -> RayHead:
    """``ray start --head --block`` in its own session, dashboard on 127.0.0.1; returns once the
    Jobs API answers. Token auth is on when ``env`` says RAY_AUTH_MODE=token (pass ``token`` to
    check readiness through it)."""
    port = pick_port(port, "Ray head (--ray-port)")
    dashboard_port = pick_port(dashboard_port, "Ray dashboard (--dashboard-port)")
    # Short: Ray puts Unix sockets under it, and socket paths are limited to 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="vmr-ray-", dir="/tmp")
    command = [
        executable("ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1",
        "--port", str(port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--include-dashboard", "true",
        # Fixed defaults (10001, 52365) would collide with a second head on the machine.
        "--ray-client-server-port", str(processes.free_port()),
        "--dashboard-agent-listen-port", str(processes.free_port()),
        "--temp-dir", temp_dir,
    ]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    if object_store_mb is not None:
        command += ["--object-store-memory", str(object_store_mb * 1024 * 1024)]
    # Ray processes that look for "their" cluster (Ray Train's placement-group cleaner, the state
    # API) otherwise pick among every Ray instance on the machine and fail when there are several.
    env = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    url = f"http://127.0.0.1:{dashboard_port}"
    headers = {"Authorization": f"Bearer {token}"} if token else None
    record = None
    try:
        record = processes.start("ray-head", command, log, env)
        processes.wait_ready(record, lambda: http_ok(f"{url}/api/jobs/", headers), timeout_s)
    except BaseException:
        if record is not None:
            processes.stop(record)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return RayHead(record=record, gcs_address=f"127.0.0.1:{port}", dashboard_url=url, temp_dir=temp_dir)


def start_mlflow(state_dir: Path, port: int, env: Mapping[str, str]) -> tuple[ProcessRecord, str]:
    """``mlflow server`` on a sqlite store in the state dir; one worker and no job runner (each
    costs memory). Artifacts go to an absolute folder, never a process's cwd."""
    port = pick_port(port, "MLflow server (--mlflow-port)")
    store = (state_dir / "mlflow").resolve()
    store.mkdir(parents=True, exist_ok=True)
    command = [
        executable("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    record = processes.start("mlflow", command, state_dir / "logs" / "mlflow.log", env, cwd=store)
    url = f"http://127.0.0.1:{port}"
    processes.wait_ready(record, lambda: http_ok(f"{url}/health"), SERVER_START_TIMEOUT_S)
    return record, url


def start_s3(state_dir: Path, port: int, bucket: str, env: Mapping[str, str]) -> tuple[ProcessRecord, dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with one bucket. It keeps objects in memory: they are gone
    after ``videomar down``. Returns the AWS_* settings that reach it."""
    port = pick_port(port, "S3 server (--s3-port)")
    command = [executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    record = processes.start("s3", command, state_dir / "logs" / "s3.log", env)
    endpoint = f"http://127.0.0.1:{port}"
    processes.wait_ready(record, lambda: http_ok(endpoint), SERVER_START_TIMEOUT_S)
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    settings = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": f"videomar-{secrets.token_hex(4)}",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
        "AWS_DEFAULT_REGION": storage.DEFAULT_S3_REGION,
        "VIDEOMAR_S3_BUCKET": bucket,
    }
    return record, settings


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


def read_state(state_dir: Path) -> dict | None:
    path = state_path(state_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ProcessError(f"{path}: unreadable cluster state ({err}); stop its processes by hand") from None


def write_state(state_dir: Path, state: dict) -> None:
    with atomic_path(state_path(state_dir)) as tmp:
        tmp.write_text(json.dumps(state, indent=2))


def running_records(state: dict | None) -> list[ProcessRecord]:
    records = [ProcessRecord.from_dict(p) for p in (state or {}).get("processes", [])]
    return [r for r in records if processes.is_running(r)]


def up(settings: UpSettings, report: Callable[[str], None] = print) -> dict[str, str]:
    """Start the servers; returns the variables written to the env file. On any failure, what was
    already started is stopped again."""
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    alive = running_records(read_state(state_dir))
    if alive:
        pids = ", ".join(f"{r.name} {r.pid}" for r in alive)
        raise ProcessError(f"a local cluster from {state_dir} is already up ({pids}); run `videomar down` first")
    state: dict = {"processes": [], "ray_temp_dir": None}
    try:
        env_values = _start_all(settings, state_dir, state, report)
    except BaseException:
        _stop_all(state, lambda _msg: None)
        state_path(state_dir).unlink(missing_ok=True)
        raise
    write_env_file(state_dir / ENV_FILE_NAME, env_values)
    return env_values


def _start_all(settings: UpSettings, state_dir: Path, state: dict, report: Callable[[str], None]) -> dict[str, str]:
    def remember(record: ProcessRecord) -> None:
        state["processes"].append(record.to_dict())
        write_state(state_dir, state)

    env_values: dict[str, str] = {}
    if settings.s3:
        record, s3_env = start_s3(state_dir, settings.s3_port, settings.bucket, os.environ)
        remember(record)
        env_values.update(s3_env)
        report(f"S3 server     {s3_env['AWS_ENDPOINT_URL']}  bucket s3://{settings.bucket}  (pid {record.pid})")
    record, mlflow_url = start_mlflow(state_dir, settings.mlflow_port, os.environ)
    remember(record)
    env_values["MLFLOW_TRACKING_URI"] = mlflow_url
    report(f"MLflow server {mlflow_url}  (pid {record.pid})")

    token = None
    if settings.auth:
        token = secrets.token_hex(32)
        token_file = state_dir / TOKEN_FILE_NAME
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        env_values.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)})
    else:
        env_values["RAY_AUTH_MODE"] = "disabled"
    head = start_ray_head(
        state_dir / "logs" / "ray-head.log",
        head_environment(env_values),
        port=settings.ray_port,
        dashboard_port=settings.dashboard_port,
        num_cpus=settings.num_cpus,
        object_store_mb=settings.object_store_mb,
        token=token,
    )
    state["ray_temp_dir"] = head.temp_dir
    remember(head.record)
    env_values.update({"RAY_ADDRESS": head.gcs_address, "RAY_API_SERVER_ADDRESS": head.dashboard_url})
    auth = f"token auth, token in {state_dir / TOKEN_FILE_NAME}" if token else "no auth"
    report(f"Ray head      {head.gcs_address}  dashboard {head.dashboard_url}  ({auth}; pid {head.record.pid})")
    return env_values


def down(state_dir: Path, report: Callable[[str], None] = print) -> int:
    """Stop the processes ``up`` recorded in ``state_dir``; returns how many were still running."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if state is None:
        report(f"nothing to stop: no cluster state in {state_dir}")
        return 0
    stopped = _stop_all(state, report)
    for name in (STATE_FILE_NAME, ENV_FILE_NAME, TOKEN_FILE_NAME):
        (state_dir / name).unlink(missing_ok=True)
    return stopped


def _stop_all(state: dict, report: Callable[[str], None]) -> int:
    """Stop in reverse start order: the Ray head (and its jobs) before the servers they use."""
    stopped = 0
    for data in reversed(state.get("processes", [])):
        record = ProcessRecord.from_dict(data)
        if processes.stop(record):
            stopped += 1
            report(f"stopped {record.name} (pid {record.pid})")
        else:
            report(f"{record.name} (pid {record.pid}) had already exited")
    temp_dir = state.get("ray_temp_dir")
    if temp_dir and Path(temp_dir).name.startswith("vmr-ray-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    return stopped
