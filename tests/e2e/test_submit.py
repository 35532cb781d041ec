"""``videomar submit | status | logs | stop | list | curriculum`` against a real local Ray head
(token auth on), started once for the module by tests/support/ray_head.py.

One precompute job (jobs/quickstart/precompute.yaml with absolute paths), submitted like any
other, makes the latent dataset the curriculum trains on: sample videos -> an untrained VAE of the
quickstart's shape -> latent shards in the quickstart stages' buckets.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.latents import FRAMES, LATENT_CHANNELS, SIZE, VIDEOS, quickstart_vae
from tests.support.ray_head import ray_head  # noqa: F401
from tests.support.ray_state import state
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.platform import cli
from videomar.platform.processes import free_port
from videomar.platform.submission import JobsClient

# Bounds, not targets: a loaded 2-core machine runs a training stage in one to five minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 600
STAGE_STEPS = 2


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


@dataclass(frozen=True)
class Precomputed:
    job_id: str
    manifest: str
    submit_stdout: str


@pytest.fixture(scope="module")
def precomputed(ray_head, tmp_path_factory) -> Precomputed:
    """`videomar submit --wait` of a precompute spec over a few sample videos."""
    work = tmp_path_factory.mktemp("precompute")
    videos = write_sample_videos(work / "sample", VIDEOS, seed=0, frames=FRAMES, size=SIZE)
    # jobs/quickstart/precompute.yaml as written, but for absolute paths.
    data = yaml.safe_load((ROOT / "jobs" / "quickstart" / "precompute.yaml").read_text())
    data.update(source=str(videos), vae=quickstart_vae(work / "vae"), output=str(work / "latents"))
    spec = write_spec(work / "precompute.yaml", data)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = cli.main(["submit", spec, "--wait", *ray_head.cli_args()])
    job_id = out.getvalue().splitlines()[0]
    assert status == 0, JobsClient(ray_head.address, str(ray_head.token_file)).logs(job_id)[-3000:]
    return Precomputed(job_id, str(work / "latents" / "manifest.json"), out.getvalue())


def test_a_submitted_precompute_succeeds_and_its_logs_come_back(ray_head, precomputed, capsys):
    status, out, _ = videomar(capsys, "status", precomputed.job_id, *ray_head.cli_args())
    assert status == 0 and out.startswith(f"{precomputed.job_id}: SUCCEEDED")
    status, logs, _ = videomar(capsys, "logs", precomputed.job_id, *ray_head.cli_args())
    assert status == 0
    # The job ran `videomar run` on the cluster and its own output comes back.
    assert "videomar run precompute.yaml" in logs
    assert precomputed.manifest.removesuffix("/manifest.json") in logs
    # ... and it wrote a dataset with both buckets where the spec said.
    manifest = json.loads(Path(precomputed.manifest).read_text())
    assert len(manifest["buckets"]) == 2  # the two quickstart stages' buckets


def small_stage(stage_file: str, manifest: str, runs: Path, dest: Path, **changes) -> str:
    """A quickstart stage, shortened, with absolute paths (each job runs in its own directory)."""
    data = yaml.safe_load((ROOT / "jobs" / "quickstart" / stage_file).read_text())
    data["storage"] = str(runs)
    data["data"]["manifest"] = manifest
    data["model"].setdefault("overrides", {})["latent_channels"] = LATENT_CHANNELS  # the test VAE's
    data["schedule"].update(steps=STAGE_STEPS, warmup_steps=1)
    data["checkpoint"].update(every=2, keep=1)
    data["optim"]["batch_size"] = 2
    data["samples"]["count"] = 0
    data.update(changes)
    return write_spec(dest, data)


@pytest.mark.timeout(600)  # two training jobs one after the other (about 2 minutes)
def test_curriculum_runs_stages_in_order_each_from_the_previous_export(ray_head, precomputed, tmp_path, capsys):
    from videomar.artifacts.layout import COMPLETE_MARKER

    runs = tmp_path / "runs"
    stage1 = small_stage("stage1.yaml", precomputed.manifest, runs, tmp_path / "stage1.yaml")
    # stage2.yaml names a relative init_from; the curriculum points it at stage 1's actual export.
    stage2 = small_stage("stage2.yaml", precomputed.manifest, runs, tmp_path / "stage2.yaml")
    status, out, err = videomar(capsys, "curriculum", stage1, stage2, *ray_head.cli_args())
    assert status == 0, err + out
    export1, export2 = runs / "quickstart-stage1" / "export", runs / "quickstart-stage2" / "export"
    ids = re.findall(r"submitted as (\S+?)[,\s]", out)
    assert len(ids) == 2, out
    assert f"stage 2/2 {stage2}: submitted as {ids[1]}, starting from {export1}" in out
    assert f"final export {export2}" in out
    for export in (export1, export2):
        assert (export / COMPLETE_MARKER).is_file()
    # Stage 2 ran from stage 1's export, and only after stage 1 had ended.
    shipped = yaml.safe_load((export2 / "spec.yaml").read_text())
    assert shipped["init_from"]["export"] == str(export1)
    jobs = {job.job_id: job for job in client(ray_head).list()}
    assert [jobs[i].status for i in ids] == ["SUCCEEDED", "SUCCEEDED"]
    assert jobs[ids[1]].start_time >= jobs[ids[0]].end_time


def test_a_failed_stage_stops_the_curriculum_and_says_why(ray_head, precomputed, tmp_path, capsys):
    runs = tmp_path / "runs"
    missing = tmp_path / "gone" / "manifest.json"
    stage1 = small_stage("stage1.yaml", str(missing), runs, tmp_path / "stage1.yaml")
    stage2 = small_stage("stage2.yaml", precomputed.manifest, runs, tmp_path / "stage2.yaml")
    before = {job.job_id for job in client(ray_head).list()}
    status, out, err = videomar(capsys, "curriculum", stage1, stage2, *ray_head.cli_args())
    assert status == 1
    assert f"curriculum stopped: stage {stage1} (job " in err and "ended FAILED" in err
    assert "data.manifest" in err and str(missing) in err  # the reason, from the job's log
    assert f"not submitted: {stage2}" in err
    new = [job for job in client(ray_head).list() if job.job_id not in before]
    assert [job.metadata["videomar_spec"] for job in new] == ["stage1.yaml"]


def test_a_spec_failing_on_the_cluster_reaches_failed_with_its_reason(ray_head, tmp_path, capsys):
    # Valid as written; the folder of videos it names does not exist where the job runs.
    missing = tmp_path / "no-such-videos"
    data = yaml.safe_load((ROOT / "jobs" / "quickstart" / "precompute.yaml").read_text())
    data.update(source=str(missing), vae=quickstart_vae(tmp_path / "vae"), output=str(tmp_path / "latents"))
    spec = write_spec(tmp_path / "precompute.yaml", data)
    # --follow streams the log as the job runs and exits 1 when it did not succeed; the job's
    # preflight on the cluster names the missing folder.
    status, followed, err = videomar(capsys, "submit", spec, "--follow", *ray_head.cli_args())
    assert status == 1
    job_id = followed.splitlines()[0]
    assert f"{job_id}: FAILED" in err
    assert str(missing) in followed and "does not exist" in followed
    assert client(ray_head).state(job_id).status == "FAILED"

    status, out, _ = videomar(capsys, "status", job_id, *ray_head.cli_args())
    assert status == 0
    assert out.startswith(f"{job_id}: FAILED")
    status, out, _ = videomar(capsys, "logs", job_id, *ray_head.cli_args())
    assert status == 0
    # The reason, from the job's own output on the cluster.
    assert f"{missing} does not exist" in out
    assert not (tmp_path / "latents" / "manifest.json").exists()


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


def test_stop_stops_a_running_job(ray_head, tmp_path, capsys):
    from tests.support.tiny_export import write_tiny_export

    export = write_tiny_export(str(tmp_path / "export"))
    port = free_port()
    # A serve job runs until stopped; stopping it shuts Serve down (its actors are detached).
    spec = write_spec(tmp_path / "serve.yaml", {
        "kind": "serve", "name": "stop-me", "export": export,
        "http": {"host": "127.0.0.1", "port": port},
        "resources": {"cpus_per_worker": 0.5, "gpus_per_worker": 0},
        "auth": {"token_env": None},
    })
    job_id = submit(capsys, ray_head, spec)
    jobs = client(ray_head)
    deadline_state = None
    for _ in range(JOB_TIMEOUT_S):
        deadline_state = jobs.state(job_id)
        if deadline_state.status != "PENDING":
            break
        time.sleep(1)
    assert deadline_state.status == "RUNNING", deadline_state
    for _ in range(JOB_TIMEOUT_S):  # stop it once it serves, so that there is a Serve to shut down
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                break
        time.sleep(1)

    status, out, err = videomar(capsys, "stop", job_id, "--wait", *ray_head.cli_args())
    assert status == 0, err
    assert f"{job_id}: stop requested" in out and f"{job_id}: STOPPED" in out
    assert jobs.state(job_id).status == "STOPPED"
    serve_actors = [a["class_name"] for a in state(ray_head, "actors", state="ALIVE")
                    if a["class_name"].startswith(("ServeController", "ProxyActor", "ServeReplica"))]
    assert not serve_actors, serve_actors
    # Stopping it again says it already ended.
    status, out, _ = videomar(capsys, "stop", job_id, *ray_head.cli_args())
    assert status == 0 and "already ended (STOPPED)" in out

    status, out, _ = videomar(capsys, "list", *ray_head.cli_args())
    assert status == 0
    assert re.search(rf"^{job_id}\s+STOPPED\s+.*serve\.yaml$", out, re.M), out
