"""bench.gpu's sampler part: the KV-cached sampler against re-computing every previous frame at
each step, same model, inputs and seed, under the sampler's own bf16 autocast on CUDA.

The two modes compute the same function (MODEL.md section 6), so their videos must agree up to
bf16 rounding; the cached one is timed for frames per second. The weights are random (the
default initialisation, with the head's zero-initialised output layers drawn small so samples
depend on the backbone) and the head's x0 is clipped to the latents' range, as a trained stage's
is (training/config.py), so the diffusion chain stays bounded on random weights.
"""

from __future__ import annotations

import time

import torch

PAPER_STAGE1_S = 107.0  # the paper's KV-cached sampling time for 6 latent frames at stage-1 size
# Relative L2 difference allowed between the cached and recomputed videos: bf16 keeps 8 bits of
# mantissa (about 4e-3 per rounding); the two modes round differently and each generated frame
# conditions the next, so a few roundings' worth is the bound.
AGREEMENT_TOLERANCE = 5e-2
X0_CLIP = 4.0


def random_model(preset: str, channels: int, device: torch.device, seed: int = 0):
    from videomar.model.config import model_config
    from videomar.model.videomar import VideoMAR

    torch.manual_seed(seed)
    model = VideoMAR(model_config(preset, latent_channels=channels, head={"x0_clip": X0_CLIP}))
    with torch.no_grad():
        for layer in model.head.net.modules():
            if isinstance(layer, torch.nn.Linear) and not layer.weight.any():
                layer.weight.normal_(0, 0.02)
    return model.to(device).eval()


def sampler_figures(preset: str, grid: int, frames: int, steps: int, cfg: float, device: torch.device,
                    channels: int = 16, seed: int = 0) -> dict:
    from videomar.model.sampler import generate

    model = random_model(preset, channels, device, seed)
    cond = torch.randn(1, channels, 1, grid, grid, generator=torch.Generator().manual_seed(1)).to(device)
    text = model.tokenize(["a handwritten 3 moving up and left"])

    def run(mode: str, n_frames: int, n_steps: int) -> tuple[torch.Tensor, float]:
        sync(device)
        started = time.perf_counter()
        out = generate(model, cond, text, frames=n_frames, steps=n_steps, cfg=cfg, mode=mode,
                       generator=torch.Generator(device=device).manual_seed(seed))
        sync(device)
        return out, time.perf_counter() - started

    for mode in ("kv_cache", "recompute"):  # warm-up: kernels chosen, memory pools grown
        run(mode, 1, 2)
    cached, cached_s = run("kv_cache", frames, steps)
    reference, recompute_s = run("recompute", frames, steps)
    del model
    new_cached, new_reference = cached[:, :, 1:].float(), reference[:, :, 1:].float()  # generated frames
    per_frame = [rel_diff(new_cached[:, :, i], new_reference[:, :, i]) for i in range(frames)]
    return {
        "preset": preset, "precision": "bf16" if device.type == "cuda" else "fp32",
        "tokens_per_frame": grid * grid, "frames": frames, "spatial_steps": steps, "cfg": cfg,
        "kv_cache_s": round(cached_s, 2), "recompute_s": round(recompute_s, 2),
        "frames_per_s": round(frames / cached_s, 3),
        "speedup_vs_recompute": round(recompute_s / cached_s, 2),
        "speedup_vs_paper": round(PAPER_STAGE1_S * frames / 6 / cached_s, 2),
        "rel_diff": round(rel_diff(new_cached, new_reference), 5),
        "rel_diff_per_frame": [round(v, 5) for v in per_frame],
        "max_abs_diff": round(float((new_cached - new_reference).abs().max()), 5),
        "finite": bool(torch.isfinite(cached).all() and torch.isfinite(reference).all()),
        "agree": bool(max(per_frame) <= AGREEMENT_TOLERANCE),
        "tolerance": AGREEMENT_TOLERANCE,
    }


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
