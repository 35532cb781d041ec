"""A real ``mlflow server`` on loopback for tests.

Tests take it as the argument ``mlflow_server`` (registered once, in conftest.py). The server
keeps runs in a sqlite file and artifacts in an absolute directory, both in a temporary folder;
it runs one worker with job execution disabled (otherwise it costs about 1.7 GiB), and is
stopped by its PID.
"""

from __future__ import annotations

import os
import signal

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from videomar.platform.processes import free_port

START_TIMEOUT_S = 90.0


@dataclass
class MlflowServer:
    uri: str
    pid: int
    artifacts: Path  # where the server stores artifacts (absolute)


def _wait_until_up(uri: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {uri} did not answer within {START_TIMEOUT_S:.0f} s; log: {log}")


def _stop(proc: subprocess.Popen) -> None:
    """The server forks workers in its own process group: signal the group we created."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="session")
def mlflow_server():
    root = Path(tempfile.mkdtemp(prefix="videomar-mlflow-server-"))
    artifacts = root / "artifacts"
    artifacts.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(artifacts)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # its own process group, so stopping it stops its workers
        )
    try:
        _wait_until_up(uri, proc, log)
        yield MlflowServer(uri=uri, pid=proc.pid, artifacts=artifacts)
    finally:
        _stop(proc)
