"""Self-attention with q/k RMSNorm, 3D RoPE and an optional KV-cache prefix; cross-attention to
text with a padding mask. Both go through scaled_dot_product_attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videomar.model.rope import apply_rope


def block_causal_mask(frame_ids: torch.Tensor, past: int) -> torch.Tensor | None:
    """Bool mask [S, past + S]: a token sees every cached token, and current tokens of frames <= its
    own (bidirectional inside a frame). None when the current tokens are one frame (all visible)."""
    if frame_ids.numel() == 0 or bool((frame_ids == frame_ids[0]).all()):
        return None
    own = frame_ids[:, None] >= frame_ids[None, :]  # [S, S]
    cached = torch.ones(frame_ids.numel(), past, dtype=torch.bool, device=frame_ids.device)
    return torch.cat([cached, own], dim=1)


class HeadNorm(nn.RMSNorm):
    """RMSNorm of each head's queries or keys, its weight cast to the input's dtype: under bf16
    autocast (the sampler's) the input is bf16 and the weight fp32, a pair torch's fused kernel
    refuses, falling back to a slower composite."""

    def __init__(self, dim: int):
        super().__init__(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, rope_slices: tuple[int, int, int]):
        super().__init__()
        self.heads = heads
        self.rope_slices = rope_slices
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = HeadNorm(dim // heads)
        self.k_norm = HeadNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cos, sin, mask, past):
        """x [B, S, D]; past (k rotated, v) [B, heads, P, hd] or None.
        Returns (out [B, S, D], (k, v) of the current tokens [B, heads, S, hd]), k *before* its
        rotary embedding: the cache rotates it at whatever position it re-bases the frame to."""
        q, k, v = rearrange(self.qkv(x), "b s (three h d) -> three b h s d", three=3, h=self.heads)
        q = apply_rope(self.q_norm(q), cos, sin, self.rope_slices)
        k = self.k_norm(k)
        k_rot = apply_rope(k, cos, sin, self.rope_slices)
        k_all, v_all = (k_rot, v) if past is None else (torch.cat([past[0], k_rot], 2), torch.cat([past[1], v], 2))
        out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)  # [B, h, S, hd]
        return self.proj(rearrange(out, "b h s d -> b s (h d)")), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, text_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(text_dim, 2 * dim)
        self.q_norm = HeadNorm(dim // heads)
        self.k_norm = HeadNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def text_kv(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, L, text_dim] -> (k, v) [B, heads, L, hd]; computed once per generation."""
        k, v = rearrange(self.kv(text), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        return self.k_norm(k), v

    def forward(self, x, kv, key_mask):
        """x [B, S, D]; kv from text_kv; key_mask [B, L] bool (True = a real text token)."""
        q = self.q_norm(rearrange(self.q(x), "b s (h d) -> b h s d", h=self.heads))
        mask = key_mask[:, None, None, :]  # [B, 1, 1, L]
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
        return self.proj(rearrange(out, "b h s d -> b s (h d)"))
