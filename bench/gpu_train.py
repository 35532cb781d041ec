"""bench.gpu's training part: a preset trained for some steps through the platform's own training
step (videomar.platform.training.loop: build_trainee, train_step) with DeepSpeed ZeRO-2, in this
one process (world size 1, NCCL on CUDA, gloo on CPU), on synthetic latents held in memory.

What runs is what a Ray Train worker of a stage runs per step: a fresh latent sample from the
posterior moments, the next-frame loss under bf16 autocast, DeepSpeed's backward, clipping and
its ZeRO-2 step around torch's fused AdamW, the lr schedule, and the EMA of the fp32 masters.
Ray Train itself (worker start-up, checkpoints, MLflow) is not timed: bench.train measures it.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import tempfile
import time
from itertools import cycle

import torch

from bench.gpu_flops import StepShape, bf16_peak, mfu, train_step_flops

LATENT_CHANNELS = 16
CLIPS = 32  # distinct synthetic clips, cycled through
CAPTION = "clip {:02d}: a smooth pattern drifting to the right"  # every caption has the same length
LOSS_WINDOW = 10  # "falling": the mean of the last steps is below the mean of the first ones


def synthetic_batches(batch: int, frames: int, grid: int, seed: int = 0):
    """Endless (epoch, index, Batch): smooth random latent fields that drift one token per frame,
    with small posterior variances, so the loss has structure to learn."""
    from videomar.platform.training.data import Batch

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(CLIPS, LATENT_CHANNELS, 1, 4, 4, generator=gen)
    field = torch.nn.functional.interpolate(coarse[:, :, 0], size=(grid, grid), mode="bicubic", align_corners=False)
    mean = torch.stack([field.roll(t, dims=-1) for t in range(frames)], dim=2)  # [CLIPS, C, T', H', W']
    mean = mean / mean.std()
    logvar = torch.full_like(mean, math.log(1e-4))
    captions = [CAPTION.format(i) for i in range(CLIPS)]
    starts = cycle(range(0, CLIPS - batch + 1, batch) if batch <= CLIPS else [0])
    for index, start in enumerate(starts):
        rows = [(start + j) % CLIPS for j in range(batch)]
        yield 0, index, Batch(mean[rows], logvar[rows], [captions[r] for r in rows])


def init_single_process(device: torch.device) -> None:
    """torch.distributed for one rank, as Ray Train sets it up: NCCL on CUDA, gloo on CPU."""
    import torch.distributed as dist

    from videomar.platform.processes import free_port

    if dist.is_initialized():
        return
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
                      WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def stage_plan(preset: str, batch: int, steps: int, frames: int, grid: int, lr: float, cuda: bool):
    """A real, validated train spec and the plan a driver would resolve from it."""
    from videomar.platform.jobs import parse_spec
    from videomar.platform.training.config import DatasetInfo, StagePlan
    from videomar.platform.training.deepspeed_config import resolve_precision

    workdir = f"{tempfile.gettempdir()}/videomar-bench-gpu"  # named by the spec, never written to
    spec = parse_spec({
        "kind": "train", "name": f"bench-gpu-{preset}",
        "model": {"preset": preset, "overrides": {"latent_channels": LATENT_CHANNELS}},
        "data": {"manifest": f"{workdir}/synthetic/manifest.json", "bucket": {"frames": 9, "height": 256, "width": 256}},
        "optim": {"batch_size": batch}, "schedule": {"steps": steps, "warmup_steps": min(5, steps)},
        "ema_rate": 0.999, "deepspeed": {"zero_stage": 2, "precision": "auto"},
        "resources": {"workers": 1, "gpus_per_worker": 1 if cuda else 0},
        "storage": f"{workdir}/runs", "samples": {"count": 0},
    })
    dataset = DatasetInfo(manifest_uri=spec.data.manifest, latent_shape=(LATENT_CHANNELS, frames, grid, grid),
                          latent_scale=1.0, vae_id="synthetic", vae_uri=None, clips=CLIPS, val_clips=0)
    return StagePlan(spec=spec, spec_yaml="", run_dir=f"{workdir}/runs", export_uri=spec.export_uri,
                     dataset=dataset, precision=resolve_precision("auto", cuda), lr=lr, tracking=None)


def train_figures(preset: str, batch: int, steps: int, frames: int, grid: int, device: torch.device,
                  lr: float = 3e-4, warmup: int = 5, peak: float | None = None) -> dict:
    """Train ``preset`` for ``steps`` steps; losses, step time, MFU and peak memory."""
    from videomar.artifacts.checkpoint import TrainState
    from videomar.platform.training.loop import WorkerEnv, build_trainee, train_step

    cuda = device.type == "cuda"
    init_single_process(device)
    plan = stage_plan(preset, batch, steps, frames, grid, lr, cuda)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    trainee = build_trainee(plan, None, device)
    build_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in trainee.model.parameters())
    inner = getattr(trainee.engine.optimizer, "optimizer", trainee.engine.optimizer)  # ZeRO wraps it
    optimizer = f"{type(inner).__name__}(fused={inner.defaults.get('fused')})"
    env = WorkerEnv(rank=0, world=1, device=device, node_id="local")
    batches = synthetic_batches(batch, frames, grid)
    state, losses, times = TrainState(), [], []
    try:
        for _ in range(steps):
            started = time.perf_counter()
            losses.append(train_step(plan, env, trainee, batches, state))  # float(): waits for the GPU
            times.append(time.perf_counter() - started)
        peak_bytes = torch.cuda.max_memory_allocated(device) if cuda else None
        ema_s = ema_update_time(trainee)
    finally:
        release(trainee)
    cfg = plan.spec.model.build()
    text_len = min(len(CAPTION.format(0).encode()) + 1, cfg.text_max_len)  # BOS, then the caption's bytes
    flops = train_step_flops(cfg, StepShape(batch, frames, (grid // cfg.patch_size) ** 2, text_len))
    step_time = statistics.median(times[warmup:]) if len(times) > warmup else statistics.median(times)
    return {
        "preset": preset, "parameters": parameters,
        "precision": plan.precision, "zero_stage": plan.spec.deepspeed.zero_stage,
        "optimizer": optimizer,
        "batch": batch, "latent_frames": frames, "tokens_per_frame": grid * grid, "steps": steps,
        **loss_figures(losses),
        "step_time_s": round(step_time, 4),
        "tokens_per_s": round(batch * frames * grid * grid / step_time, 1),
        "model_tflops_per_step": round(flops / 1e12, 3),
        "mfu": rounded(mfu(flops, step_time, peak)),
        # The EMA's update is part of the step; timed alone it shows what its CPU copy costs.
        "ema_update_s": round(ema_s, 4),
        "mfu_without_ema": rounded(mfu(flops, step_time - ema_s, peak)),
        "peak_memory_gb": round(peak_bytes / 1e9, 2) if peak_bytes is not None else None,
        "build_s": round(build_s, 1),
    }


def ema_update_time(trainee, repeats: int = 3) -> float:
    """Median seconds of the EMA's update alone, as train_step makes it (fp32 masters -> EMA)."""
    from videomar.platform.training.ema import deepspeed_master, master_weights

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        trainee.ema.update(master_weights(trainee.model, deepspeed_master(trainee.engine.optimizer)))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def loss_figures(losses: list[float]) -> dict:
    window = max(1, min(LOSS_WINDOW, len(losses) // 2))
    first, last = statistics.fmean(losses[:window]), statistics.fmean(losses[-window:])
    return {"loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
            "loss_mean_first": round(first, 4), "loss_mean_last": round(last, 4),
            "loss_finite": all(math.isfinite(v) for v in losses), "loss_falling": last < first}


def release(trainee) -> None:
    """Free the engine's GPU memory before the next preset is built."""
    destroy = getattr(trainee.engine, "destroy", None)
    if destroy is not None:
        destroy()
    trainee.model = trainee.engine = trainee.scheduler = trainee.ema = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_peak(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak (None when unknown)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, bf16_peak(name)
