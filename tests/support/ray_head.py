"""A real local Ray head for tests of the Jobs API, with token authentication on.

``ray start --head --block`` runs as a subprocess this fixture owns, in a session of its own,
with its own temp dir and free ports; the dashboard binds 127.0.0.1. The fixture waits until the
Jobs API answers, and at the end stops the process and its whole process group by PID (never
``ray stop``, which would stop other people's clusters too). Jobs run from this checkout's venv;
the head's environment points MLflow at a sqlite store in the fixture's directory.

Use: ``from tests.support.ray_head import ray_head  # noqa: F401`` and a ``ray_head`` argument.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from videomar.platform import processes
from videomar.platform.local_cluster import RayHead, head_environment, start_ray_head

# Logical CPUs the head offers: a job driver, 2 training workers and a data task at once.
HEAD_CPUS = 4
HEAD_OBJECT_STORE_MB = 384


@dataclass(frozen=True)
class RayHeadHandle:
    address: str  # the dashboard / Jobs API URL
    gcs_address: str
    token_file: Path
    workdir: Path
    head: RayHead

    def cli_args(self) -> list[str]:
        """``--address ... --token-file ...`` for the job commands."""
        return ["--address", self.address, "--token-file", str(self.token_file)]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ray-head")
    token = secrets.token_hex(32)
    token_file = workdir / "auth_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    env = head_environment(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
            "RAY_DEDUP_LOGS": "0",
        }
    )
    head = start_ray_head(
        workdir / "ray-head.log",
        env,
        num_cpus=HEAD_CPUS,
        object_store_mb=HEAD_OBJECT_STORE_MB,
        token=token,
    )
    try:
        yield RayHeadHandle(head.dashboard_url, head.gcs_address, token_file, workdir, head)
    finally:
        processes.stop(head.record)
        shutil.rmtree(head.temp_dir, ignore_errors=True)
    assert not processes.group_members(head.record.pid), "the Ray head left processes behind"
