"""``kind: train``: one curriculum stage on Ray Train + DeepSpeed ZeRO, then its optional eval.

    preflight: the dataset manifest has the stage's bucket and matches the model, init_from is a
               complete export or a checkpoint, eval is possible for the bucket
    run:       run_stage (plan -> each rank's share of the bucket -> MLflow runs -> the training
               core's worker group running training/loop.train_func -> export -> close the runs),
               then evaluation/job.evaluate_export on the held-out clips, into the stage's run

Ray Train's experiment directory is ``<storage>/<name>``; running the same spec again finds its
checkpoints there and resumes from the latest (Ray Train V2 restores a run by name), and a lost
worker is survived by restarting the worker group from the latest checkpoint (FailureConfig).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from safetensors.torch import load as load_safetensors

from videomar.artifacts import checkpoint, export, storage
from videomar.errors import SpecError
from videomar.platform import console
from videomar.platform.specs.train import TrainSpec as Spec
from videomar.platform.tracking import StageRuns, close_stage, log_stage_inputs, open_stage
from videomar.platform.training import core
from videomar.platform.training.config import DatasetInfo, StagePlan, plan_stage
from videomar.platform.training.config import preflight as _preflight
from videomar.platform.training.core import RunPlace, StepHook
from videomar.platform.training.data import StageData, check_memory, load_stage_data
from videomar.platform.training.loop import train_func
from videomar.ray_env import cluster_cpus

__all__ = ["Spec", "preflight", "run", "run_stage"]


def preflight(spec: Spec) -> DatasetInfo:
    return _preflight(spec)


def run(spec: Spec, info: DatasetInfo) -> int:
    result = run_stage(spec, info)
    if spec.eval is not None:
        evaluate(spec, result)
    return 0


def evaluate(spec: Spec, result: "StageResult") -> dict:
    """The end-of-stage eval on the dataset's held-out clips, logged into the stage's MLflow run."""
    # Ray Data's actor pool and the sampler load only when a stage asks for its eval.
    from videomar.platform.evaluation.job import evaluate_export

    found = evaluate_export(result.export_uri, result.manifest_uri, spec.data.bucket.shape,
                            options=spec.eval, run_id=result.run_id, tracking_uri=result.tracking_uri)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(found["metrics"].items()) if isinstance(v, float))
    console.say(f"{spec.name}: eval on held-out clips: {shown}")
    return found


@dataclass(frozen=True)
class StageResult:
    export_uri: str
    checkpoint_uri: str
    metrics: dict[str, Any]
    run_id: str | None
    parent_run_id: str | None
    manifest_uri: str  # the dataset the stage trained on (its held-out clips are the eval's)
    tracking_uri: str  # the MLflow store of the stage's runs


def run_stage(spec: Spec, info: DatasetInfo, hooks: Sequence[StepHook] = ()) -> StageResult:
    """Train one stage to completion (or resume it) and write its export. ``info`` is what
    ``preflight(spec)`` found; Ray is connected. ``hooks`` run on every rank after each step."""
    import ray  # the driver's Ray: connected by now

    check_cluster(spec)
    plan = plan_stage(spec, info)
    data = stage_data(plan)
    init = initial_weights(plan)
    runs = open_stage(plan.tracking, spec.mlflow.curriculum or spec.name, spec.name)
    _log_inputs(runs, plan)
    try:
        place = RunPlace(name=spec.name, storage=spec.storage, keep=spec.checkpoint.keep,
                         max_failures=spec.checkpoint.max_failures, s3_workers=_uses_s3(spec))
        config = {"plan": plan, "init": ray.put(init) if init else None, "run_id": runs.run_id, "data": data,
                  "hooks": tuple(hooks)}
        result = core.fit(train_func, config, spec.resources, place, f"train {spec.name}", spec.schedule.steps)
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


def check_cluster(spec: Spec) -> None:
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
        data = load_stage_data(plan.dataset.manifest_uri, b.shape, spec.data.split,
                               spec.data.memory_mb)
        check_memory(data, spec.optim.batch_size)
    except ValueError as err:  # ConfigError included; a bad shard is a ValueError
        raise SpecError(f"{spec.file}: {err}") from None
    return data


def _uses_s3(spec: Spec) -> bool:
    return any(storage.is_s3(u) for u in (spec.storage, spec.data.manifest, spec.export or ""))


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
        # Serving embeds prompts with the encoder the dataset's captions were embedded with.
        "text_encoder": plan.dataset.text if spec.model.build().text_encoder == "precomputed" else None,
    }
    export.write_export(plan.export_uri, ema, config, plan.spec_yaml, plan.dataset.vae_uri)
