"""3D rotary position embedding: separate rotate-half RoPE on (t, h, w) slices of each head."""

from __future__ import annotations

import torch
from torch import nn


class Rope3D(nn.Module):
    """cos/sin tables for integer (t, y, x) positions; each axis gets its own channel slice."""

    def __init__(self, slices: tuple[int, int, int], theta: float = 10000.0):
        super().__init__()
        self.slices = tuple(slices)
        for axis, dim in zip("thw", self.slices):
            inv = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [dim/2]
            self.register_buffer(f"inv_freq_{axis}", inv.float(), persistent=False)

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pos [S, 3] integer -> (cos, sin), each [S, head_dim] in float32."""
        parts = []
        for i, axis in enumerate("thw"):
            inv = getattr(self, f"inv_freq_{axis}")
            ang = pos[:, i, None].float() * inv[None, :]  # [S, dim/2]
            parts.append(torch.cat([ang, ang], dim=-1))
        angles = torch.cat(parts, dim=-1)  # [S, head_dim]
        return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, slices: tuple[int, ...]) -> torch.Tensor:
    """x [B, heads, S, head_dim]; cos, sin [S, head_dim]. Rotate-half inside each axis slice."""
    rotated = torch.cat([_rotate_half(part) for part in x.split(slices, dim=-1)], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)
