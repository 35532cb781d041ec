"""The temporal KV cache: per-layer keys and values of finished (clean) frames, plus the text
keys and values, which are the same for every step of a generation."""

from __future__ import annotations

import torch


class KVCache:
    """Keys/values [B, heads, S_cached, head_dim] per layer; grows by one frame at a time."""

    def __init__(self, depth: int):
        self.keys: list[torch.Tensor | None] = [None] * depth
        self.values: list[torch.Tensor | None] = [None] * depth

    def get(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        k = self.keys[layer]
        return None if k is None else (k, self.values[layer])

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        old = self.keys[layer]
        self.keys[layer] = k if old is None else torch.cat([old, k], dim=2)
        self.values[layer] = v if old is None else torch.cat([self.values[layer], v], dim=2)

    @property
    def length(self) -> int:
        """Tokens cached (the same in every layer)."""
        k = self.keys[0]
        return 0 if k is None else k.shape[2]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
