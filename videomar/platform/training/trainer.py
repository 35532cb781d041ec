"""Running one curriculum stage on the connected Ray: checks, MLflow runs, TorchTrainer, export.

    (preflight, in jobs/train.py) -> plan -> shard footers -> MLflow runs -> TorchTrainer.fit()
    -> export -> close the runs

Ray Train's experiment directory is ``<storage>/<name>``; running the same spec again finds its
checkpoints there and resumes from the latest (Ray Train V2 restores a run by name), and a lost
worker is survived by restarting the worker group from the latest checkpoint (FailureConfig).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors

from videomar.artifacts import storage
from videomar.errors import SpecError
from videomar.ray_env import cluster_cpus, gpus_per_worker
from videomar.platform.specs.train import TrainSpec
from videomar.artifacts import export
from videomar.platform.tracking import StageRuns, close_stage, log_stage_inputs, open_stage
from videomar.platform.training import checkpoint
from videomar.platform.training.config import DatasetInfo, StagePlan, plan_stage
from videomar.platform.training.data import StageData, check_memory, load_stage_data

COLLECTIVE_TIMEOUT_S = 120  # longest a rank waits in all_reduce/barrier for the others


@dataclass(frozen=True)
class StageResult:
    export_uri: str
    checkpoint_uri: str
    metrics: dict[str, Any]
    run_id: str | None
    parent_run_id: str | None
    manifest_uri: str  # the dataset the stage trained on (its held-out clips are the eval's)
    tracking_uri: str  # the MLflow store of the stage's runs


def run_stage(spec: TrainSpec, info: DatasetInfo) -> StageResult:
    """Train one stage to completion (or resume it) and write its export. ``info`` is what
    ``preflight(spec)`` found; Ray is connected."""
    check_cluster(spec)
    plan = plan_stage(spec, info)
    data = stage_data(plan)
    init = initial_weights(plan)
    runs = open_stage(plan.tracking, spec.mlflow.curriculum or spec.name, spec.name)
    _log_inputs(runs, plan)
    try:
        result = fit(plan, init, runs.run_id, data)
        write_stage_export(plan, result.checkpoint)
    except BaseException:
        close_stage(runs, None, ok=False)
        raise
    if spec.mlflow.log_export:
        with export.local_copy(plan.export_uri) as export_dir:
            close_stage(runs, str(export_dir), ok=True)
    else:
        close_stage(runs, None, ok=True)
    return StageResult(export_uri=plan.export_uri, checkpoint_uri=_checkpoint_uri(plan, result.checkpoint),
                       metrics=dict(result.metrics or {}), run_id=runs.run_id, parent_run_id=runs.parent_id,
                       manifest_uri=info.manifest_uri, tracking_uri=plan.tracking.tracking_uri)


def check_cluster(spec: TrainSpec) -> None:
    """Refuse a cluster too small for the workers: Ray Train would wait for them forever."""
    needed, have = spec.min_cluster_cpus(), cluster_cpus()
    if have < needed:
        raise SpecError(
            f"{spec.file}: resources: {spec.resources.workers} workers x cpus_per_worker="
            f"{spec.resources.cpus_per_worker:g} need {needed:g} CPUs, but the cluster has {have:g}; lower "
            f"resources.cpus_per_worker or resources.workers, or run on a cluster with more CPUs"
        )


def initial_weights(plan: StagePlan) -> dict[str, dict] | None:
    """init_from's weights and/or EMA (read on the driver: workers need no access to it)."""
    init = plan.spec.init_from
    if init is None:
        return None
    if init.checkpoint is not None:
        return checkpoint.checkpoint_weights(init.uri, init.carry, field=init.field)
    weights = export.export_weights(init.uri, field=init.field)
    return {part: weights for part in init.carry}


def _log_inputs(runs: StageRuns, plan: StagePlan) -> None:
    with tempfile.TemporaryDirectory(prefix="videomar-spec-") as tmp:
        path = Path(tmp, "spec.yaml")
        path.write_text(plan.spec_yaml)
        log_stage_inputs(runs, plan.spec.model_dump(mode="json"), str(path), plan.dataset.manifest_uri,
                         plan.dataset.vae_id)


def stage_data(plan: StagePlan) -> StageData:
    """The stage's bucket as the workers read it (each rank its own part, with pyarrow: no Ray Data
    pipeline re-runs at every epoch); SpecError when data.memory_mb cannot hold a batch."""
    spec = plan.spec
    b = spec.data.bucket
    try:
        data = load_stage_data(plan.dataset.manifest_uri, (b.frames, b.height, b.width), spec.data.split,
                               spec.data.memory_mb)
        check_memory(data, spec.optim.batch_size)
    except ValueError as err:  # ConfigError included; a bad shard is a ValueError
        raise SpecError(f"{spec.file}: {err}") from None
    return data


def fit(plan: StagePlan, init: dict | None, run_id: str | None, data: StageData):
    """TorchTrainer.fit() of the stage: ZeRO workers as the spec scales them, checkpoints in storage."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from videomar.platform.training.loop import train_func

    spec = plan.spec
    r = spec.resources
    gpus = gpus_per_worker(r.gpus_per_worker)
    resources = {"CPU": r.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"plan": plan, "init": ray.put(init) if init else None, "run_id": run_id, "data": data},
        scaling_config=ScalingConfig(num_workers=r.workers, use_gpu=gpus > 0,
                                     resources_per_worker=resources, placement_strategy=r.placement),
        run_config=_run_config(plan, RunConfig, FailureConfig, CheckpointConfig),
        # A rank that dies leaves the others blocked in a collective; torch's default 30-minute
        # timeout would hold the worker group (and the retry) that long.
        torch_config=TorchConfig(timeout_s=COLLECTIVE_TIMEOUT_S),
    )
    return trainer.fit()


def _run_config(plan: StagePlan, RunConfig, FailureConfig, CheckpointConfig):
    spec = plan.spec
    fs, path = storage.filesystem(spec.storage)
    env = storage.s3_env() if _uses_s3(spec) else {}
    return RunConfig(
        name=spec.name,
        storage_path=path,
        storage_filesystem=fs if storage.is_s3(spec.storage) else None,
        failure_config=FailureConfig(max_failures=spec.checkpoint.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=spec.checkpoint.keep),
        worker_runtime_env={"env_vars": env} if env else None,
    )


def _uses_s3(spec: TrainSpec) -> bool:
    uris = [spec.storage, spec.data.manifest, spec.export or ""]
    return any(storage.is_s3(u) for u in uris)


def _checkpoint_uri(plan: StagePlan, ckpt) -> str:
    return f"s3://{ckpt.path}" if storage.is_s3(plan.spec.storage) else ckpt.path


def write_stage_export(plan: StagePlan, ckpt) -> None:
    """Write the export from the final checkpoint's EMA weights."""
    if ckpt is None:
        raise RuntimeError(f"stage {plan.spec.name} finished without a checkpoint; nothing to export")
    fs = ckpt.filesystem
    with fs.open_input_stream(f"{ckpt.path}/{checkpoint.EMA_FILE}") as f:
        ema = load_safetensors(f.read())
    with fs.open_input_stream(f"{ckpt.path}/{checkpoint.STATE_FILE}") as f:
        state = json.loads(f.read())
    spec = plan.spec
    b = spec.data.bucket
    config = {
        "model": spec.model.build().to_dict(),
        "preset": spec.model.preset,
        "latent": {"shape": list(plan.dataset.latent_shape), "scale": plan.dataset.latent_scale},
        "bucket": {"frames": b.frames, "height": b.height, "width": b.width},
        "vae_id": plan.dataset.vae_id,
        "stage": spec.name,
        "step": state["step"],
        "manifest": plan.dataset.manifest_uri,
    }
    export.write_export(plan.export_uri, ema, config, plan.spec_yaml, plan.dataset.vae_uri)
