"""``videomar submit | status | logs | stop | list`` against a real local Ray head (token auth on),
started once for the module by tests/support/ray_head.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.ray_head import ray_head  # noqa: F401
from videomar.platform import cli
from videomar.platform.processes import free_port
from videomar.platform.submission import JobsClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
JOB_TIMEOUT_S = 240


def videomar(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process; returns (exit status, stdout, stderr)."""
    status = cli.main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def write_spec(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def client(head) -> JobsClient:
    return JobsClient(head.address, str(head.token_file))


def submit(capsys, head, spec: str, *extra: str) -> str:
    status, out, err = videomar(capsys, "submit", spec, *head.cli_args(), *extra)
    assert status == 0, err
    job_id = out.strip().splitlines()[0]
    assert re.fullmatch(r"videomar-[a-z0-9-]+-[0-9a-f]{8}", job_id), out
    return job_id


def test_a_spec_failing_on_the_cluster_reaches_failed_with_its_reason(ray_head, tmp_path, capsys):
    missing = tmp_path / "no-such-dataset" / "manifest.json"
    spec = write_spec(tmp_path / "broken-stage.yaml", {
        "kind": "train", "name": "broken-stage",
        "data": {"manifest": str(missing), "bucket": {"frames": 5, "height": 32, "width": 32}},
        "schedule": {"steps": 2}, "storage": str(tmp_path / "runs"),
    })
    # --follow streams the log as the job runs and exits 1 when it did not succeed.
    status, followed, err = videomar(capsys, "submit", spec, "--follow", *ray_head.cli_args())
    assert status == 1
    job_id = followed.splitlines()[0]
    assert f"{job_id}: FAILED" in err
    assert "data.manifest" in followed and str(missing) in followed
    assert client(ray_head).state(job_id).status == "FAILED"

    status, out, _ = videomar(capsys, "status", job_id, *ray_head.cli_args())
    assert status == 0
    assert out.startswith(f"{job_id}: FAILED")
    status, out, _ = videomar(capsys, "logs", job_id, *ray_head.cli_args())
    assert status == 0
    # The reason, from the job's own output on the cluster: the field and the missing file.
    assert "data.manifest" in out and str(missing) in out
    assert not (tmp_path / "runs").exists(), "a failed preflight must write nothing"


def test_stop_stops_a_running_job(ray_head, tmp_path, capsys):
    from tests.support.tiny_export import write_tiny_export

    export = write_tiny_export(str(tmp_path / "export"))
    # A serve job runs until stopped.
    spec = write_spec(tmp_path / "serve.yaml", {
        "kind": "serve", "name": "stop-me", "checkpoint": export,
        "http": {"host": "127.0.0.1", "port": free_port()},
        "deployment": {"cpus_per_replica": 0.5, "gpus_per_replica": 0},
        "auth": {"token_env": None},
    })
    job_id = submit(capsys, ray_head, spec)
    jobs = client(ray_head)
    deadline_state = None
    for _ in range(JOB_TIMEOUT_S):
        deadline_state = jobs.state(job_id)
        if deadline_state.status != "PENDING":
            break
        import time

        time.sleep(1)
    assert deadline_state.status == "RUNNING", deadline_state

    status, out, err = videomar(capsys, "stop", job_id, "--wait", *ray_head.cli_args())
    assert status == 0, err
    assert f"{job_id}: stop requested" in out and f"{job_id}: STOPPED" in out
    assert jobs.state(job_id).status == "STOPPED"
    # Stopping it again says it already ended.
    status, out, _ = videomar(capsys, "stop", job_id, *ray_head.cli_args())
    assert status == 0 and "already ended (STOPPED)" in out

    status, out, _ = videomar(capsys, "list", *ray_head.cli_args())
    assert status == 0
    assert re.search(rf"^{job_id}\s+STOPPED\s+.*serve\.yaml$", out, re.M), out


def test_unknown_job_ids_are_named(ray_head, capsys):
    for verb in ("status", "logs", "stop"):
        status, _, err = videomar(capsys, verb, "videomar-nope-00000000", *ray_head.cli_args())
        assert status == 1
        assert "no job 'videomar-nope-00000000' on the Ray cluster at" in err, err


def test_a_wrong_token_is_refused_without_being_printed(ray_head, tmp_path, capsys):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-0123456789")
    status, out, err = videomar(capsys, "list", "--address", ray_head.address, "--token-file", str(wrong))
    assert status == 1
    assert "authentication failed: the token was refused" in err
    assert "not-the-token" not in out + err
    real = ray_head.token_file.read_text()
    assert real not in out + err
    # No token at all: the cluster asks for one.
    status, _, err = videomar(capsys, "list", "--address", ray_head.address)
    assert status == 1 and "requires a token" in err
