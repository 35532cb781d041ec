"""The transformer block: pre-norm self-attention (q/k RMSNorm, 3D RoPE), cross-attention to
text, GELU MLP."""

from __future__ import annotations

from torch import nn

from videomar.model.attention import CrossAttention, SelfAttention
from videomar.model.config import ModelConfig


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, cfg.rope_slices)
        self.norm2 = nn.LayerNorm(d)
        self.cross = CrossAttention(d, cfg.heads, cfg.text_dim)
        self.norm3 = nn.LayerNorm(d)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))

    def forward(self, x, cos, sin, mask, past, text_kv, text_mask):
        """x [B, S, D] -> (x [B, S, D], (k, v) of x for the cache)."""
        a, kv = self.attn(self.norm1(x), cos, sin, mask, past)
        x = x + a
        x = x + self.cross(self.norm2(x), text_kv, text_mask)
        x = x + self.mlp(self.norm3(x))
        return x, kv
