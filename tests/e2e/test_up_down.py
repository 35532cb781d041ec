"""``videomar up`` starts a real Ray head, MLflow server and S3 server; ``videomar down`` stops
exactly those, leaving no process of theirs running."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from videomar.platform.envfile import read_env_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

VIDEOMAR = [sys.executable, "-m", "videomar.platform.cli"]


def videomar(*args: str, env: dict | None = None, unset: tuple[str, ...] = (), timeout: float = 200):
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([*VIDEOMAR, *args], capture_output=True, text=True, timeout=timeout,
                          env={**environ, **(env or {})})


def sessions_alive(sids: set[int]) -> list[str]:
    """Live processes (not zombies) in any of these sessions, as 'pid cmdline'."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # after[0] is the state, after[3] the session id.
        if after[0] != "Z" and int(after[3]) in sids:
            alive.append(f"{entry.name} {cmd[:120]}")
    return alive


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(f"{entry.name} {cmd[:120]}")
    return found


def test_up_then_down_leaves_nothing_running(tmp_path):
    state = tmp_path / "state"
    up = videomar("up", "--state-dir", str(state), "--ray-port", "0", "--dashboard-port", "0",
                  "--mlflow-port", "0", "--s3", "--s3-port", "0", "--num-cpus", "1", "--object-store-mb", "128")
    assert up.returncode == 0, up.stderr + up.stdout
    saved = json.loads((state / "cluster.json").read_text())
    records = saved["processes"]
    assert [r["name"] for r in records] == ["s3", "mlflow", "ray-head"]
    sids = {r["pid"] for r in records}
    try:
        env = read_env_file(state / "env")
        assert env["RAY_AUTH_MODE"] == "token"
        token = Path(env["RAY_AUTH_TOKEN_PATH"]).read_text()
        assert token and token not in up.stdout + up.stderr, "the token must never be printed"
        assert oct(os.stat(state / "env").st_mode & 0o777) == "0o600"
        # Each server answers at the address written to the env file.
        for url in (env["MLFLOW_TRACKING_URI"] + "/health", env["AWS_ENDPOINT_URL"]):
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.status == 200
        # The job commands read the env file (address, auth mode, token file): the Jobs API
        # answers through token auth.
        listed = videomar("list", env={"VIDEOMAR_ENV_FILE": str(state / "env")},
                          unset=("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == "no jobs"
        # A second `up` on the same state dir refuses and starts nothing.
        again = videomar("up", "--state-dir", str(state), "--ray-port", "0", "--dashboard-port", "0",
                         "--mlflow-port", "0")
        assert again.returncode == 1 and "already up" in again.stderr
        assert json.loads((state / "cluster.json").read_text())["processes"] == records
    finally:
        down = videomar("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped ") == 3, down.stdout
    assert sessions_alive(sids) == []
    assert processes_mentioning(str(state)) == []
    assert processes_mentioning(saved["ray_temp_dir"]) == []
    assert not (state / "env").exists() and not (state / "cluster.json").exists()
    assert "nothing to stop" in videomar("down", "--state-dir", str(state)).stdout


def test_up_with_a_busy_port_fails_naming_it_and_leaves_nothing(tmp_path):
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = videomar("up", "--state-dir", str(state), "--s3", "--s3-port", "0", "--mlflow-port", str(port),
                      "--dashboard-port", "0", "--ray-port", "0")
    assert up.returncode == 1
    assert f"port {port}" in up.stderr and "--mlflow-port" in up.stderr
    # The S3 server started before the failure was stopped again.
    s3_pid = int(re.search(r"S3 server .*\(pid (\d+)\)", up.stdout).group(1))
    assert sessions_alive({s3_pid}) == []
    assert processes_mentioning(str(state)) == []
    assert not (state / "cluster.json").exists() and not (state / "env").exists()
