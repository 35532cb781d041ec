"""The VAE trainer's worker: one Ray Train rank with DDP-averaged gradients, its own batches, the
same initial weights everywhere; rank 0 returns the weights through the final checkpoint."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videomar.artifacts.layout import WEIGHTS_FILE
from videomar.model.vae import CausalVideoVAE
from videomar.platform.training.core import after_step, stream_seed
from videomar.platform.training.vae_clips import model_pixels, psnr


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
    rank, world, device = ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    vae = CausalVideoVAE(config["vae"])
    vae.load_state_dict(ray.get(config["init"]))
    frames: np.ndarray = ray.get(config["frames"])  # uint8 [N, T, H, W, 3]
    objective = ray.train.torch.prepare_model(ReconstructionObjective(vae))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=hp["lr"], betas=tuple(hp["betas"]),
                                  weight_decay=hp["weight_decay"])
    # Two streams per rank, none shared: which clips it picks, and its posterior samples.
    progress = config.get("progress") if rank == 0 else None  # the console's Reporter, or None
    if progress is not None:
        progress(0, hp["steps"], now=True)
    picker = torch.Generator().manual_seed(stream_seed(hp["seed"], rank, 0, world))
    torch.manual_seed(stream_seed(hp["seed"], rank, 1, world))
    for step in range(1, hp["steps"] + 1):
        picked = torch.randint(len(frames), (hp["batch_size"],), generator=picker).numpy()
        batch = model_pixels(frames[picked]).to(device)  # [B, 3, T, H, W]
        parts = _step(objective, optimizer, batch, hp["grad_clip"])
        if progress is not None and (progress.due() or step == hp["steps"]):
            progress(step, hp["steps"], now=True, loss=float(parts["loss"].detach()))
        if step % hp["log_every"] == 0 or step == hp["steps"]:
            metrics = {"step": step, **_averaged(parts)}
            metrics["psnr_train"] = psnr(metrics["mse"])
            if rank == 0:
                print(f"train-vae step {step}/{hp['steps']}: loss {metrics['loss']:.4f} mse {metrics['mse']:.4f} "
                      f"kl {metrics['kl']:.3f} train PSNR {metrics['psnr_train']:.2f} dB", file=sys.stderr)
            if step < hp["steps"]:
                ray.train.report(metrics)
        after_step(config["hooks"], rank, step, False)
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
