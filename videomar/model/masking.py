"""Randomness of the next-frame objective (MODEL.md section 4): target frames, mask ratios,
and random token orders. Every draw takes an optional torch.Generator for reproducibility."""

from __future__ import annotations

import math

import torch

from videomar.model import rng


def sample_target_frames(batch: int, frames: int, device, generator=None) -> torch.Tensor:
    """k per sample [B]: uniform in [1, T-1] for clips (frame 0 is always context), 0 for images."""
    if frames == 1:
        return torch.zeros(batch, dtype=torch.long, device=device)
    return torch.randint(1, frames, (batch,), device=device, generator=generator)


def sample_mask_ratio(batch: int, low: float, std: float, device, generator=None) -> torch.Tensor:
    """Truncated normal on [low, 1] with mean 1 (inverse-CDF sampling): [B]."""
    normal = torch.distributions.Normal(0.0, 1.0)
    lo_cdf = float(normal.cdf(torch.tensor((low - 1.0) / std)))
    u = torch.rand(batch, device=device, generator=generator) * (0.5 - lo_cdf) + lo_cdf
    return (1.0 + std * torch.special.ndtri(u)).clamp(low, 1.0)


def random_orders(batch: int, tokens: int, device, generator=None) -> torch.Tensor:
    """A random permutation of token indices per row: [B, N]. ``generator`` may be a
    videomar.model.rng.RowGenerators (one stream per row)."""
    return rng.rand((batch, tokens), device, generator).argsort(dim=1)


def mask_from_orders(orders: torch.Tensor, num_masked: torch.Tensor) -> torch.Tensor:
    """True for the first num_masked[b] tokens of each row's order: [B, N] bool."""
    ranks = orders.argsort(dim=1)  # rank of each token in its row's order
    return ranks < num_masked[:, None]


def sample_token_mask(batch: int, tokens: int, low: float, std: float, device, generator=None) -> torch.Tensor:
    """MAR masking of one frame: a random order, the first ceil(r*N) tokens masked. [B, N] bool."""
    ratio = sample_mask_ratio(batch, low, std, device, generator)
    num = torch.ceil(ratio * tokens).long().clamp(1, tokens)
    return mask_from_orders(random_orders(batch, tokens, device, generator), num)


def tokens_left_masked(tokens: int, step: int, steps: int, remaining: int) -> int:
    """The sampler's cosine schedule: tokens still masked after `step` (0-based) of `steps`.

    floor(N*cos(pi/2*(step+1)/steps)), kept below `remaining` so each step decides at least one
    token and at least `steps - 1 - step` so every later step has one left. Needs steps <= N.
    """
    if step >= steps - 1:
        return 0
    left = math.floor(tokens * math.cos(math.pi / 2 * (step + 1) / steps))
    return max(steps - 1 - step, min(left, remaining - 1))
