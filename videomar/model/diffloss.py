"""The per-token diffusion head: an adaLN residual MLP conditioned on (timestep + the backbone's
output for that token), with MAR's two-method contract: `loss(target, z, mask)` and
`sample(z, temperature, cfg)`."""

from __future__ import annotations

import math

import torch
from torch import nn

from videomar.model import rng
from videomar.model.config import HeadConfig
from videomar.model.diffusion import GaussianDiffusion

TIME_FREQ_DIM = 256  # sinusoidal features of the timestep before its MLP


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FREQ_DIM, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t [n] (training timesteps) -> [n, width]."""
        half = TIME_FREQ_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x, c):
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class HeadMLP(nn.Module):
    """(x_t [n, c], t [n], z [n, D]) -> [n, 2c]: the prediction (epsilon or v) and the variance
    interpolation value."""

    def __init__(self, token_dim: int, cond_dim: int, cfg: HeadConfig):
        super().__init__()
        w = cfg.width
        self.input_proj = nn.Linear(token_dim, w)
        self.time_embed = TimestepEmbedder(w)
        self.cond_embed = nn.Linear(cond_dim, w)
        self.blocks = nn.ModuleList(ResBlock(w) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, 2 * token_dim)

    def forward(self, x, t, z):
        c = self.time_embed(t) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))

    def zero_init(self) -> None:
        """adaLN modulations and the output start at zero: each block starts as the identity."""
        for layer in [b.ada[-1] for b in self.blocks] + [self.final_ada[-1], self.out]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


class DiffusionHead(nn.Module):
    def __init__(self, token_dim: int, cond_dim: int, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.token_dim = token_dim
        self.net = HeadMLP(token_dim, cond_dim, cfg)
        self.train_diffusion = GaussianDiffusion.cosine(cfg.train_steps, prediction=cfg.prediction)
        self.sample_diffusion = GaussianDiffusion.cosine(cfg.train_steps, cfg.sample_steps, cfg.prediction)

    def token_losses(self, target, z, generator=None):
        """target [n, c], z [n, D] -> per-token loss [batch_mul, n], each row its own timesteps."""
        mul = self.cfg.batch_mul
        x0 = target.repeat(mul, 1)  # [mul*n, c]
        cond = z.repeat(mul, 1)  # [mul*n, D]
        return self.train_diffusion.training_losses(self.net, x0, cond, generator).view(mul, -1)

    def loss(self, target, z, mask, generator=None):
        """Mean loss over the tokens where mask is true: target [n, c], z [n, D], mask [n]."""
        per_token = self.token_losses(target, z, generator)  # [mul, n]
        weight = mask.to(per_token.dtype)[None].expand_as(per_token)
        return (per_token * weight).sum() / weight.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, z, temperature: float | torch.Tensor = 1.0, cfg: float | torch.Tensor = 1.0, generator=None):
        """Draw tokens for conditions z. With cfg != 1, z is [2n, D] (conditional rows, then the
        null-text rows) and the result [n, c] follows the guided prediction; else z is [n, D].
        temperature and cfg may be per-token tensors [n, 1]; a cfg tensor always means guided.
        generator may be a videomar.model.rng.RowGenerators (one stream per batch row)."""
        guided = torch.is_tensor(cfg) or cfg != 1.0
        n = z.shape[0] // 2 if guided else z.shape[0]
        diffusion = self.sample_diffusion
        x = rng.randn((n, self.token_dim), z.device, generator, z.dtype)
        for i in reversed(range(diffusion.steps)):
            t = torch.full((n,), i, device=z.device, dtype=torch.long)
            t_net = torch.full((z.shape[0],), int(diffusion.timestep_map[i]), device=z.device, dtype=torch.long)
            out = self.net(torch.cat([x, x]) if guided else x, t_net, z)
            pred, var_value = out.chunk(2, dim=-1)
            if guided:
                (pred_c, pred_u), var_value = pred.chunk(2), var_value[:n]
                pred = pred_u + cfg * (pred_c - pred_u)
            mean, log_var = diffusion.p_mean_logvar(pred, var_value, x, t, self.cfg.x0_clip)
            if i > 0:
                noise = rng.randn(tuple(x.shape), x.device, generator, x.dtype)
                x = mean + torch.exp(0.5 * log_var) * noise * temperature
            else:
                x = mean
        return x
