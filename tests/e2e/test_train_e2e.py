"""Training end to end on real components: latent shards made by the precompute pipeline, a local
Ray running Ray Train + DeepSpeed ZeRO on 2 CPU workers, MLflow (a local sqlite store, and a real
``mlflow server``), a real S3 server on loopback, and a 2-node local Ray cluster.

Each DeepSpeed + Ray Train run costs tens of seconds here, so every run proves several things.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from tests.support.faults import ExitAfter
from tests.support.latents import LATENT_CHANNELS
from videomar.artifacts import storage
from videomar.errors import SpecError
from videomar.platform.jobs import parse_spec
from videomar.artifacts import export
from videomar.artifacts import checkpoint
from videomar.platform.training.loop import checksum
from videomar.platform.tracking import TAG_CURRICULUM, TAG_ROLE
from videomar.platform.jobs.train import preflight, run_stage

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4
pytestmark = pytest.mark.slow


def train(spec, *hooks):
    """A stage as ``videomar run`` runs it, with its StageResult: preflight, then the stage (with
    test step hooks on its workers, such as a fault)."""
    return run_stage(spec, preflight(spec), hooks)


@pytest.fixture(scope="module")
def latents(tmp_path_factory, ray_local):
    """A real latent dataset: sample videos -> the precompute pipeline -> Parquet shards + manifest."""
    from tests.support.latents import build_latents

    return build_latents(tmp_path_factory.mktemp("latents"))


def stage(name: str, latents, work: Path, stage_file: str = "stage1.yaml", **changes):
    """A quickstart stage spec made small: STEPS steps, a checkpoint every 2, paths under ``work``."""
    data = yaml.safe_load((ROOT / "jobs/quickstart" / stage_file).read_text())
    data.update(name=name, storage=str(work / "runs"))
    data["data"]["manifest"] = latents.manifest
    data["model"].setdefault("overrides", {})["latent_channels"] = LATENT_CHANNELS  # the test VAE's
    data["schedule"].update(steps=STEPS, warmup_steps=1)
    data["checkpoint"].update(every=2, keep=2)
    data["optim"]["batch_size"] = 2
    data["mlflow"]["tracking_uri"] = f"sqlite:///{work / 'mlflow.db'}"
    data["samples"].update(count=1, steps=2)
    data.pop("init_from", None)
    data.pop("eval", None)  # the quickstart test covers the end-of-stage eval
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_spec(copy.deepcopy(data), f"<{name}>")


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def first_metric(client, run_id: str, key: str) -> float:
    history = client.get_metric_history(run_id, key)
    assert history, f"metric {key} was not logged"
    return min(history, key=lambda m: (m.step, m.timestamp)).value


@pytest.mark.timeout(420)
def test_quickstart_curriculum_two_stages_zero2_rerun_resumes_stage2_starts_from_ema(
        ray_cluster, latents, tmp_path, monkeypatch):
    # Stage 1 loses a worker with no failures allowed: the run fails after its step-2 checkpoint.
    spec1 = stage("qs-stage1", latents, tmp_path, checkpoint={"every": 2, "keep": 2, "max_failures": 0})
    with pytest.raises(Exception, match="(?i)worker|actor|died"):
        train(spec1, ExitAfter(rank=1, step=3))
    assert not storage.exists(storage.join(spec1.export_uri, export.COMPLETE_MARKER))

    # Re-running the same spec resumes from that checkpoint (step 2), not from step 0.
    r1 = train(spec1)
    assert r1.metrics["step"] == STEPS and r1.metrics["resumed"] is True and r1.metrics["start_step"] == 2
    assert len(set(r1.metrics["nodes"])) == 1 and len(r1.metrics["nodes"]) == 2  # 2 workers, 1 node
    loaded = export.load_export(r1.export_uri)
    assert loaded.config["bucket"]["frames"] == spec1.data.bucket.frames and loaded.vae is not None
    assert loaded.config["step"] == STEPS

    # Stage 2 (longer clips) starts from stage 1's EMA weights: equal at its first step.
    spec2 = stage("qs-stage2", latents, tmp_path, stage_file="stage2.yaml",
                  init_from={"export": r1.export_uri, "carry": ["weights", "ema"]})
    assert spec2.data.bucket.frames > spec1.data.bucket.frames
    r2 = train(spec2)
    assert r2.metrics["step"] == STEPS and r2.metrics["start_step"] == 0
    stage1_ema = checksum(export.export_weights(r1.export_uri))
    client = mlflow_client(spec2.mlflow.tracking_uri)
    assert math.isclose(first_metric(client, r2.run_id, "start_weights_checksum"), stage1_ema, rel_tol=1e-9)
    assert math.isclose(first_metric(client, r2.run_id, "start_ema_checksum"), stage1_ema, rel_tol=1e-9)
    assert r1.parent_run_id == r2.parent_run_id  # one parent run for the curriculum
    stage2_ema = checksum(export.export_weights(r2.export_uri))
    assert not math.isclose(stage2_ema, stage1_ema, rel_tol=1e-9)  # and it trained from there


@pytest.mark.timeout(300)
def test_zero3_on_s3_with_a_killed_worker_tracked_by_an_mlflow_server(
        ray_cluster, latents, tmp_path, monkeypatch, s3_server, mlflow_server):
    spec = stage("s3-zero3", latents, tmp_path, storage=s3_server.uri("runs"), deepspeed={"zero_stage": 3},
                 mlflow={"tracking_uri": mlflow_server.uri, "experiment": "train-e2e", "curriculum": "e2e"},
                 samples={"count": 1, "steps": 2, "every": 2, "format": "gif"},
                 checkpoint={"every": 2, "keep": 3, "max_failures": 1})
    result = train(spec, ExitAfter(rank=1, step=3))

    # The killed rank was survived: the new attempt started at the step-2 checkpoint and finished.
    assert result.metrics["step"] == STEPS and result.metrics["resumed"] is True
    assert result.metrics["start_step"] == 2
    # Checkpoints (every rank's ZeRO-3 shard) and the export are in S3.
    assert result.checkpoint_uri.startswith(s3_server.uri("runs", "s3-zero3"))
    shards = [f for f, _, _ in storage.list_files(result.checkpoint_uri) if f.endswith("optim_states.pt")]
    assert len(shards) == 2
    assert checkpoint.is_checkpoint(result.checkpoint_uri)
    assert result.export_uri == s3_server.uri("runs", "s3-zero3", "export")
    assert storage.exists(storage.join(result.export_uri, export.COMPLETE_MARKER))
    assert export.load_export(result.export_uri).config["step"] == STEPS

    # The MLflow server has the curriculum's parent run and the stage's child run under it.
    client = mlflow_client(mlflow_server.uri)
    child = client.get_run(result.run_id)
    parent = client.get_run(result.parent_run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags[TAG_CURRICULUM] == "e2e" and parent.data.tags[TAG_ROLE] == "curriculum"
    assert child.info.status == "FINISHED"
    for key in ("loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "step_time_s", "peak_memory_bytes"):
        assert key in child.data.metrics, key
    assert [m.step for m in client.get_metric_history(result.run_id, "loss")][-1] == STEPS
    assert child.data.params["deepspeed.zero_stage"] == "3"
    assert child.data.params["data.manifest"] == latents.manifest
    assert [d.dataset.digest for d in child.inputs.dataset_inputs]  # the manifest, as a logged input
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"spec.yaml", "samples", "export"} <= artifacts
    samples = [a.path for step in client.list_artifacts(result.run_id, "samples")
               for a in client.list_artifacts(result.run_id, step.path)]
    assert any(p.endswith(".gif") for p in samples) and len(samples) >= 2  # every 2 steps and at the end
    exported = {a.path for a in client.list_artifacts(result.run_id, "export")}
    assert {"export/model.safetensors", "export/config.json", "export/COMPLETE", "export/vae"} <= exported


@pytest.mark.timeout(420)
def test_two_node_cluster_places_workers_apart_and_continues_from_an_s3_checkpoint(latents, tmp_path, s3_server):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this test needs its own 2-node cluster; the next test restarts the local one
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 200 << 20})
    try:
        cluster.add_node(num_cpus=2, object_store_memory=200 << 20)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        first = stage("mn-stage1", latents, tmp_path, storage=s3_server.uri("mn"),
                      resources={"workers": 2, "placement": "STRICT_SPREAD"}, samples={"count": 0})
        r1 = train(first)
        assert len(set(r1.metrics["nodes"])) == 2  # rank 0 and rank 1 on different nodes
        assert storage.exists(storage.join(r1.export_uri, export.COMPLETE_MARKER))
        # The next stage starts from stage 1's last checkpoint in S3 (not its export): the weights
        # gathered from the ZeRO-2 shards, the EMA from the checkpoint.
        second = stage("mn-stage2", latents, tmp_path, stage_file="stage2.yaml", storage=s3_server.uri("mn"),
                       resources={"workers": 2, "placement": "STRICT_SPREAD"}, samples={"count": 0},
                       init_from={"checkpoint": r1.checkpoint_uri, "carry": ["weights", "ema"]})
        r2 = train(second)
        assert r2.metrics["step"] == STEPS and len(set(r2.metrics["nodes"])) == 2
        carried = checkpoint.checkpoint_weights(r1.checkpoint_uri, ["weights", "ema"])
        client = mlflow_client(second.mlflow.tracking_uri)
        assert math.isclose(first_metric(client, r2.run_id, "start_weights_checksum"),
                            checksum(carried["weights"]), rel_tol=1e-9)
        assert math.isclose(first_metric(client, r2.run_id, "start_ema_checksum"),
                            checksum(carried["ema"]), rel_tol=1e-9)
        assert storage.exists(storage.join(r2.export_uri, export.COMPLETE_MARKER))
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_bad_specs_fail_before_training_naming_the_problem(ray_cluster, latents, tmp_path):
    # Workers that need more CPUs than the cluster has: Ray Train would wait for them forever.
    greedy = stage("greedy", latents, tmp_path, resources={"workers": 4, "cpus_per_worker": 2})
    with pytest.raises(SpecError, match=r"resources: 4 workers x cpus_per_worker=2 need 8 CPUs, but the "
                                        r"cluster has 4"):
        train(greedy)
    # Frames that are not a bucket of the dataset.
    bad_bucket = stage("bad-bucket", latents, tmp_path, data={"manifest": latents.manifest,
                                                               "bucket": {"frames": 7, "height": 32, "width": 32}})
    with pytest.raises(SpecError, match=r"data\.bucket: 7x32x32 .* is not in .*manifest.json; its buckets are"):
        train(bad_bucket)
    # init_from an export whose writer did not finish (no COMPLETE marker).
    half = tmp_path / "half-export"
    half.mkdir()
    (half / export.CONFIG_FILE).write_text("{}")
    bad_init = stage("bad-init", latents, tmp_path, init_from={"export": str(half)})
    with pytest.raises(SpecError, match=f"init_from.export: export {half} is incomplete: no COMPLETE marker"):
        train(bad_init)
    missing = stage("bad-manifest", latents, tmp_path,
                    data={"manifest": str(tmp_path / "nope.json"), "bucket": {"frames": 5, "height": 32, "width": 32}})
    with pytest.raises(SpecError, match=r"data\.manifest: .*nope\.json does not exist"):
        train(missing)
    # Unknown keys and negative lr are caught when the YAML is parsed.
    with pytest.raises(SpecError, match=r"optim\.base_lr"):
        stage("neg-lr", latents, tmp_path, optim={"batch_size": 2, "base_lr": -1.0})
    with pytest.raises(SpecError, match=r"schedule\.stepz: unknown key"):
        stage("unknown", latents, tmp_path, schedule={"steps": 4, "stepz": 3})
    # Nothing started: no run directory was made for any of them.
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(300)
def test_a_stage_that_fails_shows_its_reason_and_log_path_in_the_console(ray_cluster, latents, tmp_path, capfd):
    """As `videomar run` shows it: the console session around the stage; rank 1 dies at step 1
    and no restart is allowed, so the stage fails."""
    from videomar.platform import console

    spec = stage("fails", latents, tmp_path, checkpoint={"every": 2, "keep": 1, "max_failures": 0},
                 samples={"count": 0})
    capfd.readouterr()
    console.enable()
    try:
        with pytest.raises(console.JobFailed) as failed, console.session("fails", tmp_path):
            train(spec, ExitAfter(rank=1, step=1))
    finally:
        console.enable(on=False)
    shown = capfd.readouterr().out
    (log,) = (tmp_path / "logs").glob("fails-*.log")
    lines = shown.splitlines()
    assert lines[0] == f"log: {log} (--verbose shows it all here)"
    assert f"failed: {failed.value}" in shown and str(failed.value).strip()
    assert lines[-1] == f"full log: {log}" and "train fails: FAILED in " in shown
    assert "Traceback (most recent call last)" in log.read_text()  # the whole story is in the log
