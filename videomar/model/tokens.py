"""Latents <-> tokens. A token folds p*p latent pixels; tokens are ordered frame-major [t, h, w]."""

from __future__ import annotations

import torch
from einops import rearrange

from videomar.errors import ConfigError


def check_latent_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """The token grid (h, w) of a latent frame; ConfigError if the patch size does not divide it."""
    if height % patch_size or width % patch_size:
        raise ConfigError(
            f"latent frame {height}x{width} is not divisible by model.patch_size={patch_size}; "
            f"use a resolution whose latent height and width are multiples of the patch size"
        )
    return height // patch_size, width // patch_size


def patchify(latents: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T, N, C*p*p] with N = (H/p)*(W/p)."""
    if latents.ndim != 5:
        raise ConfigError(f"latents must be [B, C, T, H, W], got shape {tuple(latents.shape)}")
    check_latent_grid(latents.shape[-2], latents.shape[-1], patch_size)
    p = patch_size
    return rearrange(latents, "b c t (h p) (w q) -> b t (h w) (c p q)", p=p, q=p)


def unpatchify(tokens: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """[B, T, N, C*p*p] -> [B, C, T, h*p, w*p] for the token grid (h, w)."""
    p = patch_size
    h, w = grid
    return rearrange(tokens, "b t (h w) (c p q) -> b c t (h p) (w q)", h=h, w=w, p=p, q=p)


def grid_positions(t_start: int, frames: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """Integer (t, y, x) positions of `frames` frames starting at t_start: [frames*h*w, 3].

    Positions are raw grid indices, so longer clips and larger frames simply use larger
    indices (temporal and spatial extrapolation through RoPE).
    """
    h, w = grid
    t = torch.arange(t_start, t_start + frames, device=device)
    y = torch.arange(h, device=device)
    x = torch.arange(w, device=device)
    tt, yy, xx = torch.meshgrid(t, y, x, indexing="ij")
    return torch.stack([tt, yy, xx], dim=-1).reshape(-1, 3)
