"""A real S3 server on loopback for tests: moto's standalone server on a free 127.0.0.1 port.

Tests take it as the argument ``s3_server`` (conftest.py registers it once, so the session
has one server). The fixture creates a bucket, points the AWS_* environment at the server for the
session (restoring the previous values afterwards) and stops the server by its PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from videomar.artifacts.storage import DEFAULT_S3_REGION
from videomar.platform.processes import free_port

START_TIMEOUT_S = 30.0
BUCKET = "videomar-test"


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    pid: int
    env: dict[str, str] = field(default_factory=dict)

    def uri(self, *parts: str) -> str:
        """``s3://bucket/part/...`` inside the test bucket."""
        return "/".join([f"s3://{self.bucket}", *[p.strip("/") for p in parts]])


def moto_executable() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server is not installed; pip install -c constraints.txt 'moto[server]'")
    return found


def wait_until_up(endpoint: str, proc: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"S3 server exited with status {proc.returncode}; log:\n{Path(log_path).read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"S3 server at {endpoint} did not answer within {START_TIMEOUT_S:.0f} s; log: {log_path}")


def create_bucket(endpoint: str, bucket: str) -> None:
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    urllib.request.urlopen(req, timeout=10).close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server():
    """A running S3 server with one bucket; AWS_* point at it for the session."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="videomar-s3-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [moto_executable(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": DEFAULT_S3_REGION,
        "AWS_DEFAULT_REGION": DEFAULT_S3_REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    try:
        wait_until_up(endpoint, proc, log.name)
        create_bucket(endpoint, BUCKET)
        os.environ.update(env)
        yield S3Server(endpoint=endpoint, bucket=BUCKET, pid=proc.pid, env=dict(env))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop(proc)
        log.close()
        os.unlink(log.name)
