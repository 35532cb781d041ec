"""The ``train-vae`` job: train the causal video VAE on clips of videos with Ray Train, export it.

    list videos -> decode clips on the driver -> PSNR of the initial VAE
    -> TorchTrainer (DDP: gloo on CPU, NCCL on GPU; each worker draws its own batches)
    -> weights back through the final checkpoint -> PSNR after, latent scale -> export

The clips are decoded once on the driver and shared through the object store as uint8 frames
(converted to model pixels per batch): the training set lives in memory, so it is bounded by
``data.max_videos`` x ``data.clips_per_video``, and every worker samples from all of it.
The latent scale constant (1 / std of the posterior means over the clips) is measured here and
written into the export's config, so it travels with the VAE into every latent dataset.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videomar.artifacts import storage
from videomar.errors import ConfigError
from videomar.model.vae import CausalVideoVAE, VAEConfig, VideoVAE
from videomar.artifacts.layout import CONFIG_FILE, WEIGHTS_FILE
from videomar.platform.specs.train_vae import TrainVAESpec
from videomar.ray_env import gpus_per_worker

# Pixels are in [-1, 1]: the peak-to-peak range in PSNR = 10 log10(range^2 / MSE).
PIXEL_RANGE = 2.0
# Distinct random streams per (seed, rank).
_SEED_STRIDE = 1_000_003
EVAL_BATCH = 16


@dataclass(frozen=True)
class ClipSet:
    frames: np.ndarray  # uint8 [N, T, H, W, 3]: a quarter of the memory of model pixels
    videos: int  # videos that gave at least one clip
    skipped: list[str]  # "path: reason" for videos that gave none


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
    """Train, measure and export the VAE the spec describes; returns what it did."""
    from videomar.ray_env import ensure_ray

    target = storage.absolute(spec.export)
    clips = load_clips(spec)
    out(f"train-vae: {len(clips.frames)} clips of {spec.data.frames}x{spec.data.height}x{spec.data.width} "
        f"from {clips.videos} videos ({len(clips.skipped)} skipped)")
    for line in clips.skipped:
        out(f"train-vae: skipped {line}")
    config = spec.vae_config()
    torch.manual_seed(spec.train.seed)
    vae = CausalVideoVAE(config)
    eval_frames = clips.frames[: spec.train.eval_clips]
    before = reconstruction_psnr(vae, eval_frames)
    out(f"train-vae: reconstruction PSNR before training {before:.2f} dB")
    ensure_ray()
    vae.load_state_dict(fit(spec, config, vae.state_dict(), clips.frames))
    after = reconstruction_psnr(vae, eval_frames)
    vae.with_scale(latent_scale(vae, clips.frames))
    write_export(vae, target)
    result = VAEResult(export=target, psnr_before=before, psnr_after=after, scale=vae.scale, vae_id=vae.vae_id,
                       clips=len(clips.frames), videos=clips.videos, skipped=clips.skipped, vae=vae)
    out(f"train-vae: reconstruction PSNR after {spec.train.steps} steps {after:.2f} dB "
        f"(before {before:.2f} dB); latent scale {result.scale:.4f}; exported VAE {result.vae_id} to {target}")
    if spec.mlflow is not None:
        log_to_mlflow(spec, result)
    return result


# ----------------------------------------------------------------------------------------- data


def list_videos(source: str) -> list:
    """The VideoSources named by ``source`` (folder, s3:// prefix or CSV/JSONL/Parquet
    manifest, as the precompute reads them); ConfigError names the source when it cannot."""
    from videomar.data_pipelines.sources import list_sources

    try:
        videos = list_sources(source)
    except (OSError, ValueError) as err:
        raise ConfigError(f"source={storage.absolute(source)}: {err}") from None
    if not videos:
        raise ConfigError(f"source={storage.absolute(source)}: lists no videos")
    return videos


def load_clips(spec: TrainVAESpec) -> ClipSet:
    """Decode up to ``clips_per_video`` clips of every video; unreadable or short videos are
    skipped with their reason. ConfigError when no clip at all could be read."""
    from videomar.data_pipelines.clips import ClipError

    d = spec.data
    videos = list_videos(spec.source)[: d.max_videos]
    clips, skipped, used = [], [], 0
    for video in videos:
        try:
            got = video_clips(video, spec)
        except ClipError as err:
            skipped.append(str(err))
            continue
        if not got:
            skipped.append(f"{video.uri}: shorter than one clip of {d.frames} frames with stride {d.stride}")
            continue
        clips += got
        used += 1
    if not clips:
        raise ConfigError(f"source={storage.absolute(spec.source)}: no clip could be read from {len(videos)} videos")
    return ClipSet(frames=np.stack(clips), videos=used, skipped=skipped)


def video_clips(video, spec: TrainVAESpec) -> list[np.ndarray]:
    """uint8 [T, H, W, 3] clips (resized and centre cropped) of one VideoSource, within its bounds."""
    from videomar.data_pipelines.clips import clip_starts, decode_clip, open_video

    d = spec.data
    reader = open_video(video.uri)
    end = len(reader) if video.end is None else min(video.end, len(reader))
    starts = clip_starts(end, d.frames, d.stride, max_clips=d.clips_per_video, offset=video.start)
    return [decode_clip(video.uri, s, d.frames, d.stride, d.height, d.width, reader=reader) for s in starts]


def model_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [n, T, H, W, 3] clips -> float32 [n, 3, T, H, W] in [-1, 1] (the VAE's input)."""
    from videomar.data_pipelines.clips import to_model_pixels

    return torch.from_numpy(np.stack([to_model_pixels(clip) for clip in frames]))


def batches(frames: np.ndarray, size: int = EVAL_BATCH):
    """Model pixels [b, 3, T, H, W] of consecutive clips, ``size`` at a time."""
    for i in range(0, len(frames), size):
        yield model_pixels(frames[i:i + size])


# ----------------------------------------------------------------------------------- measuring


@torch.no_grad()
def reconstruction_psnr(vae: VideoVAE, frames: np.ndarray) -> float:
    """PSNR (dB) of decode(posterior mean) against uint8 clips [N, T, H, W, 3], over all pixels."""
    vae.eval()
    squared, count = 0.0, 0
    for batch in batches(frames):
        recon = vae.decode(vae.encode(batch)[0])
        squared += float((recon - batch[:, :, : recon.shape[2]]).pow(2).sum())
        count += recon.numel()
    return psnr(squared / count)


def psnr(mse: float) -> float:
    """PSNR (dB) of a mean squared error of pixels in [-1, 1]."""
    return 10.0 * math.log10(PIXEL_RANGE**2 / max(mse, 1e-12))


@torch.no_grad()
def latent_scale(vae: VideoVAE, frames: np.ndarray) -> float:
    """1 / std of the posterior means over the clips: scaled latents have about unit variance."""
    vae.eval()
    means = torch.cat([vae.encode(batch)[0].flatten() for batch in batches(frames)])
    return float(1.0 / means.std().clamp_min(1e-6))


# ------------------------------------------------------------------------------------ training


def fit(spec: TrainVAESpec, config: VAEConfig, initial: dict[str, torch.Tensor],
        frames: np.ndarray) -> dict[str, torch.Tensor]:
    """Run the workers from ``initial`` weights; returns the trained weights (rank 0's)."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    s = spec.resources
    gpus = gpus_per_worker(s.gpus_per_worker)
    resources = {"CPU": s.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    with tempfile.TemporaryDirectory(prefix="videomar-train-vae-") as scratch:
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={"train": spec.train.model_dump(), "vae": config,
                               "init": ray.put(initial), "frames": ray.put(frames)},
            scaling_config=ScalingConfig(num_workers=s.workers, use_gpu=gpus > 0,
                                         resources_per_worker=resources, placement_strategy=s.placement),
            run_config=run_config(spec, scratch),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"train-vae {spec.name}: training finished without its final weights")
        with result.checkpoint.as_directory() as directory:
            from safetensors.torch import load_file

            weights = load_file(str(Path(directory, WEIGHTS_FILE)))
        result.filesystem.delete_dir(result.path)  # the export is the product; the run folder is not
        return weights


def run_config(spec: TrainVAESpec, scratch: str):
    """Ray Train keeps the final checkpoint in ``spec.storage`` (in a run folder of its own, removed
    once the weights are read), else in ``scratch``, a local temporary folder."""
    from ray.train import RunConfig

    if spec.storage is None:
        return RunConfig(name=spec.name, storage_path=scratch)
    uri = storage.absolute(spec.storage)
    fs, path = storage.filesystem(uri)
    env = storage.s3_env() if storage.is_s3(uri) else {}
    return RunConfig(name=f"{spec.name}-{uuid.uuid4().hex[:8]}", storage_path=path,
                     storage_filesystem=fs if storage.is_s3(uri) else None,
                     worker_runtime_env={"env_vars": env} if env else None)


class ReconstructionObjective(nn.Module):
    """The VAE's training loss as a forward pass, so DDP sees it and averages the gradients."""

    def __init__(self, vae: CausalVideoVAE):
        super().__init__()
        self.vae = vae

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, parts = self.vae.reconstruction_loss(pixels)
        return loss, parts["mse"], parts["kl"]


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train rank: same initial weights everywhere, own batches, DDP-averaged gradients."""
    import ray
    import ray.train
    import ray.train.torch

    hp = config["train"]
    ctx = ray.train.get_context()
    rank, device = ctx.get_world_rank(), ray.train.torch.get_device()
    vae = CausalVideoVAE(config["vae"])
    vae.load_state_dict(ray.get(config["init"]))
    frames: np.ndarray = ray.get(config["frames"])  # uint8 [N, T, H, W, 3]
    objective = ray.train.torch.prepare_model(ReconstructionObjective(vae))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=hp["lr"], betas=tuple(hp["betas"]),
                                  weight_decay=hp["weight_decay"])
    # Two streams per rank, none shared: which clips it picks, and its posterior samples.
    picker = torch.Generator().manual_seed(hp["seed"] * _SEED_STRIDE + 2 * rank)
    torch.manual_seed(hp["seed"] * _SEED_STRIDE + 2 * rank + 1)
    for step in range(1, hp["steps"] + 1):
        picked = torch.randint(len(frames), (hp["batch_size"],), generator=picker).numpy()
        batch = model_pixels(frames[picked]).to(device)  # [B, 3, T, H, W]
        parts = _step(objective, optimizer, batch, hp["grad_clip"])
        if step % hp["log_every"] == 0 or step == hp["steps"]:
            metrics = {"step": step, **_averaged(parts)}
            metrics["psnr_train"] = psnr(metrics["mse"])
            if rank == 0:
                print(f"train-vae step {step}/{hp['steps']}: loss {metrics['loss']:.4f} mse {metrics['mse']:.4f} "
                      f"kl {metrics['kl']:.3f} train PSNR {metrics['psnr_train']:.2f} dB", file=sys.stderr)
            if step < hp["steps"]:
                ray.train.report(metrics)
    _report_final(vae, rank, metrics)


def _step(objective: nn.Module, optimizer, batch: torch.Tensor, grad_clip: float) -> dict[str, torch.Tensor]:
    cuda = batch.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        loss, mse, kl = objective(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(objective.parameters(), grad_clip)
    optimizer.step()
    return {"loss": loss, "mse": mse, "kl": kl}


def _averaged(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss parts averaged over ranks, in one all-reduce."""
    import torch.distributed as dist

    values = torch.stack([v.detach().float() for v in parts.values()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return dict(zip(parts, values.tolist()))


def _report_final(vae: CausalVideoVAE, rank: int, metrics: dict) -> None:
    """Every rank reports; rank 0 attaches the weights (identical on every rank under DDP)."""
    import ray.train
    from safetensors.torch import save_file

    if rank != 0:
        ray.train.report(metrics)
        return
    local = tempfile.mkdtemp(prefix="videomar-vae-weights-")
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in vae.state_dict().items()}
        save_file(state, str(Path(local, WEIGHTS_FILE)))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(local))
    finally:
        shutil.rmtree(local, ignore_errors=True)


# -------------------------------------------------------------------------------------- export


def write_export(vae: CausalVideoVAE, output: str) -> None:
    """Export so that a reader never sees a half export: locally into a temporary sibling folder
    renamed into place; on S3 the old config first removed, the weights written, the config last."""
    if storage.is_s3(output):
        with tempfile.TemporaryDirectory(prefix="videomar-vae-export-") as tmp:
            vae.export(tmp)
            fs, path = storage.filesystem(output)
            if storage.exists(storage.join(output, CONFIG_FILE)):
                fs.delete_file(f"{path}/{CONFIG_FILE}")
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                storage.write_bytes_atomic(storage.join(output, name), Path(tmp, name).read_bytes())
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    vae.export(str(staging))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------- tracking


def log_to_mlflow(spec: TrainVAESpec, result: VAEResult) -> None:
    """One MLflow run: the spec as params (secrets redacted), PSNR, scale, the export as artifacts."""
    import mlflow

    from videomar.platform.tracking import experiment_id, flatten, redact, resolve_target

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

