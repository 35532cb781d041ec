"""The ``train-vae`` job: train the causal video VAE on clips of videos with Ray Train, export it.

    list videos -> decode clips on the driver -> PSNR of the initial VAE
    -> the training core's worker group (DDP: gloo on CPU, NCCL on GPU; each rank its own batches)
    -> weights back through the final checkpoint -> PSNR after, latent scale -> export

The clips are decoded once on the driver and shared through the object store as uint8 frames
(converted to model pixels per batch): the training set lives in memory, so it is bounded by
``data.max_videos`` x ``data.clips_per_video``, and every worker samples from all of it.
The latent scale constant (1 / std of the posterior means over the clips) is measured here and
written into the export's config, so it travels with the VAE into every latent dataset.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from videomar.artifacts import storage
from videomar.artifacts.layout import WEIGHTS_FILE
from videomar.artifacts.vae_export import write_vae_export
from videomar.model.vae import CausalVideoVAE, VAEConfig
from videomar.platform.specs.train_vae import TrainVAESpec
from videomar.platform.tracking import experiment_id, flatten, redact, resolve_target
from videomar.platform.training import core
from videomar.platform.training.core import StepHook
from videomar.platform.training.vae_clips import latent_scale, load_clips, reconstruction_psnr
from videomar.platform.training.vae_loop import train_worker


@dataclass(frozen=True)
class VAEResult:
    export: str  # where the VAE export was written (absolute)
    psnr_before: float
    psnr_after: float
    scale: float
    vae_id: str
    clips: int
    videos: int
    skipped: list[str]
    vae: CausalVideoVAE = field(repr=False)  # the trained VAE, as exported


def run_train_vae(spec: TrainVAESpec, out=print) -> VAEResult:
    """Train, measure and export the VAE the spec describes (on the connected Ray); returns what
    it did."""
    target = storage.absolute(spec.export)
    clips = load_clips(spec)
    for line in clips.skipped:
        out(f"train-vae: skipped {line}")
    config = spec.vae_config()
    torch.manual_seed(spec.train.seed)
    vae = CausalVideoVAE(config)
    eval_frames = clips.frames[: spec.train.eval_clips]
    before = reconstruction_psnr(vae, eval_frames)
    out(f"train-vae: {len(clips.frames)} clips of {spec.data.frames}x{spec.data.height}x{spec.data.width} "
        f"from {clips.videos} videos ({len(clips.skipped)} skipped); reconstruction PSNR before training "
        f"{before:.2f} dB")
    vae.load_state_dict(fit(spec, config, vae.state_dict(), clips.frames))
    after = reconstruction_psnr(vae, eval_frames)
    vae.with_scale(latent_scale(vae, clips.frames))
    write_vae_export(vae, target)
    result = VAEResult(export=target, psnr_before=before, psnr_after=after, scale=vae.scale, vae_id=vae.vae_id,
                       clips=len(clips.frames), videos=clips.videos, skipped=clips.skipped, vae=vae)
    out(f"train-vae: reconstruction PSNR after {spec.train.steps} steps {after:.2f} dB "
        f"(before {before:.2f} dB); latent scale {result.scale:.4f}; exported VAE {result.vae_id} to {target}")
    if spec.mlflow is not None:
        log_to_mlflow(spec, result)
    return result


def fit(spec: TrainVAESpec, config: VAEConfig, initial: dict[str, torch.Tensor], frames,
        hooks: Sequence[StepHook] = ()) -> dict[str, torch.Tensor]:
    """Run the workers from ``initial`` weights; returns the trained weights (rank 0's). Ray Train
    keeps the final checkpoint in ``spec.storage`` (in a run folder of its own, removed once the
    weights are read), else in a local temporary folder."""
    import ray
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="videomar-train-vae-") as scratch:
        where = storage.absolute(spec.storage) if spec.storage else scratch
        place = core.RunPlace(name=f"{spec.name}-{uuid.uuid4().hex[:8]}", storage=where,
                              s3_workers=storage.is_s3(where))
        loop_config = {"train": spec.train.model_dump(), "vae": config, "init": ray.put(initial),
                       "frames": ray.put(frames), "hooks": tuple(hooks)}
        result = core.fit(train_worker, loop_config, spec.resources, place, f"train the VAE {spec.name}",
                          spec.train.steps)
        if result.checkpoint is None:
            raise RuntimeError(f"train-vae {spec.name}: training finished without its final weights")
        with result.checkpoint.as_directory() as directory:
            weights = load_file(str(Path(directory, WEIGHTS_FILE)))
        result.filesystem.delete_dir(result.path)  # the export is the product; the run folder is not
        return weights


def log_to_mlflow(spec: TrainVAESpec, result: VAEResult) -> None:
    """One MLflow run: the spec as params (secrets redacted), PSNR, scale, the export as artifacts."""
    import mlflow

    target = resolve_target(spec.mlflow.tracking_uri, spec.mlflow.experiment, os.getcwd())
    client = mlflow.MlflowClient(tracking_uri=target.tracking_uri)
    run = client.create_run(experiment_id(target), run_name=spec.name, tags={"videomar.kind": spec.kind})
    params = redact(flatten(spec.model_dump(mode="json")))
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    for key in ("psnr_before", "psnr_after", "scale", "clips", "videos"):
        client.log_metric(run.info.run_id, key, float(getattr(result, key)))
    client.set_tag(run.info.run_id, "videomar.vae_id", result.vae_id)
    if not storage.is_s3(result.export):
        client.log_artifacts(run.info.run_id, result.export, artifact_path="vae")
    client.set_terminated(run.info.run_id)
