"""The autoregressive sampler (MODEL.md section 6): condition frames are prefilled once into a
temporal KV cache; each new latent frame starts fully masked and is decided over S spatial steps
on a cosine schedule, each step running only that frame's tokens; the finished frame is then run
once, clean, to append its keys and values to the cache.

Per-sample settings: cfg and temperature may be given per sample (a sequence of B values), and
generator may be a sequence of B generators, one random stream per sample, so that a sample's
video does not depend on which other samples share the call (up to float rounding). This is what
a server batching unrelated requests into one call needs.

Three modes share one code path and one stream of random draws, so they compute the same video
for the same seed:
  kv_cache       (default) attend to cached keys/values of finished frames
  recompute      no cache: every step re-runs all previous frames (the reference)
  token_by_token one token per step in raster order, with the cache (next-token baseline)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from videomar.errors import ConfigError
from videomar.model.cache import KVCache
from videomar.model.masking import random_orders, tokens_left_masked
from videomar.model.rng import RowGenerators
from videomar.model.text import TextBatch, check_text
from videomar.model.tokens import check_latent_grid, grid_positions, patchify, unpatchify
from videomar.model.videomar import VideoMAR

MODES = ("kv_cache", "recompute", "token_by_token")
LATENT_CLIP = 2.0  # generated latents after the first generated frame are clipped to [-2, 2]
TemperatureSchedule = Callable[[int, int, int], float]
Temperature = float | TemperatureSchedule


def progressive_temperature(frame: int, first: int, total: int) -> float:
    """Default temperature of frame `frame` (absolute index) when generation starts at `first`
    and ends before `total`: decays linearly from 0.95 towards 0.90."""
    return 0.95 - 0.05 * (frame - first) / max(total - first, 1)


@dataclass(frozen=True)
class SampleSettings:
    frames: int  # latent frames to generate after the condition frames
    steps: int = 64  # spatial steps per frame
    # Guidance scale reached at the end of each frame; 1 disables guidance. Or one per sample.
    cfg: float | Sequence[float] = 3.0
    temperature: Temperature | Sequence[Temperature] = progressive_temperature  # or one per sample
    mode: str = "kv_cache"

    def validate(self, batch: int | None = None) -> "SampleSettings":
        if self.frames < 1:
            raise ConfigError(f"frames={self.frames}: generate at least one frame")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}: need at least one spatial step per frame")
        for name in ("cfg", "temperature"):
            values = getattr(self, name)
            if _is_sequence(values) and batch is not None and len(values) != batch:
                raise ConfigError(f"{name}: {len(values)} per-sample values for a batch of {batch}")
        for c in _as_list(self.cfg):
            if c < 1.0:
                raise ConfigError(f"cfg={c}: the guidance scale must be >= 1 (1 disables guidance)")
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        for t in _as_list(self.temperature):
            if not callable(t) and t <= 0:
                raise ConfigError(f"temperature={t}: must be > 0")
        return self

    @property
    def guided(self) -> bool:
        return any(c != 1.0 for c in _as_list(self.cfg))

    def guidance_at(self, done: float) -> float | list[float]:
        """The guidance scale once a fraction ``done`` of a frame's tokens is decided: rises
        linearly from 1 to cfg within the frame. One float, or one per sample."""
        if _is_sequence(self.cfg):
            return [1.0 + (c - 1.0) * done for c in self.cfg]
        return 1.0 + (self.cfg - 1.0) * done

    def temperature_at(self, frame: int, first: int, total: int) -> float | list[float]:
        """The temperature of a frame: one float, or one per sample."""
        def value(t: Temperature) -> float:
            return float(t(frame, first, total)) if callable(t) else float(t)

        if _is_sequence(self.temperature):
            return [value(t) for t in self.temperature]
        return value(self.temperature)


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def _as_list(value) -> list:
    return list(value) if _is_sequence(value) else [value]


@torch.no_grad()
def generate(model: VideoMAR, cond_latents: torch.Tensor, text: TextBatch, frames: int, steps: int = 64,
             cfg: float | Sequence[float] = 3.0,
             temperature: Temperature | Sequence[Temperature] = progressive_temperature,
             mode: str = "kv_cache",
             generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Continue cond_latents [B, C, Tc, H, W] (scaled latents of the image or prefix frames) by
    `frames` latent frames for the prompts in `text`: returns [B, C, Tc + frames, H, W].

    cfg and temperature may be lists of B per-sample values, generator a list of B generators
    (one random stream per sample)."""
    batch = cond_latents.shape[0] if cond_latents.ndim == 5 else None  # else _check_condition refuses it
    settings = SampleSettings(frames, steps, cfg, temperature, mode).validate(batch)
    if _is_sequence(generator):
        if len(generator) != batch:
            raise ConfigError(f"generator: {len(generator)} per-sample generators for a batch of {batch}")
        generator = RowGenerators(generator)
    return _Generation(model, cond_latents, text, settings, generator).run()


class _Generation:
    """The state of one generate() call: tokens so far, text context, cache, random stream."""

    def __init__(self, model, cond_latents, text, settings: SampleSettings, generator):
        cfg = model.config
        _check_condition(cond_latents, cfg.latent_channels)
        check_text(text, cond_latents.shape[0], cfg.text_encoder)
        self.model, self.s, self.gen = model, settings, generator
        self.p = cfg.patch_size
        self.grid = check_latent_grid(cond_latents.shape[-2], cond_latents.shape[-1], self.p)
        self.tokens = patchify(cond_latents, self.p)  # [B, Tc, N, c]
        self.batch, self.first, self.n, self.c = self.tokens.shape
        self.guided = settings.guided
        text = text.to(cond_latents.device)
        if self.guided:  # rows [0, B) conditional, [B, 2B) the learned null text
            drop = torch.arange(2 * self.batch, device=cond_latents.device) >= self.batch
            self.ctx = model.encode_text(text.repeat(2), drop)
        else:
            self.ctx = model.encode_text(text)
        self.cache = KVCache(cfg.depth) if settings.mode != "recompute" else None

    def run(self) -> torch.Tensor:
        with _autocast(self.tokens.device):
            if self.cache is not None:  # prefill: the condition frames, clean, once
                self._backbone_clean(self.tokens, 0)
            total = self.first + self.s.frames
            for f in range(self.first, total):
                frame = self._sample_frame(f, self.s.temperature_at(f, self.first, total))  # [B, N, c]
                if f > self.first:
                    frame = frame.clamp(-LATENT_CLIP, LATENT_CLIP)
                self.tokens = torch.cat([self.tokens, frame[:, None].to(self.tokens.dtype)], dim=1)
                if self.cache is not None:
                    self._backbone_clean(frame[:, None], f)
        return unpatchify(self.tokens, self.p, self.grid)

    # -- one frame ---------------------------------------------------------------------------
    def _sample_frame(self, f: int, temperature: float) -> torch.Tensor:
        b, n = self.batch, self.n
        device = self.tokens.device
        if self.s.mode == "token_by_token":
            orders = torch.arange(n, device=device).expand(b, n)  # raster order
            steps = n
        else:
            orders = random_orders(b, n, device, self.gen)
            steps = min(self.s.steps, n)
        ranks = orders.argsort(dim=1)
        current = torch.zeros(b, n, self.c, device=device, dtype=self.tokens.dtype)
        remaining = n
        for step in range(steps):
            left = tokens_left_masked(n, step, steps, remaining)
            masked = ranks < remaining  # [B, N]: the tokens not yet decided
            decide = masked & (ranks >= left)  # this step's tokens
            z = self._backbone_frame(current, masked, f)  # [rows, N, D]
            scale = self.s.guidance_at((n - left) / n)
            current[decide] = self._sample_tokens(z, decide, temperature, scale)
            remaining = left
        return current

    def _sample_tokens(self, z, decide, temperature, scale):
        if self.guided:
            cond, uncond = z.chunk(2)
            zs = torch.cat([cond[decide], uncond[decide]])  # [2k, D]
        else:
            zs = z[decide]  # [k, D]
        scale = self._per_token(scale, decide) if self.guided else 1.0
        temperature = self._per_token(temperature, decide)
        return self.model.head.sample(zs.float(), temperature, scale, self.gen).to(z.dtype)

    def _per_token(self, value, decide):
        """A float stays a float; per-sample values [B] become per-token [k, 1] for the decided tokens."""
        if not _is_sequence(value):
            return value
        rows = torch.tensor(value, dtype=torch.float32, device=decide.device)  # [B]
        return rows[:, None].expand_as(decide)[decide][:, None]  # [k, 1], row-major like z[decide]

    # -- backbone calls ----------------------------------------------------------------------
    def _rows(self, h):
        return torch.cat([h, h]) if self.guided else h

    def _backbone_frame(self, current, masked, f):
        """The current frame (decided tokens clean, others mask_token) -> z [rows, N, D]."""
        model = self.model
        h = self._rows(model.embed_tokens(current, masked))
        pos = grid_positions(f, 1, self.grid, current.device)
        if self.cache is not None:
            return model.backbone(h, pos, self.ctx, self.cache)
        prev = self.tokens.reshape(self.batch, -1, self.c)  # [B, f*N, c]: all earlier frames
        h_all = torch.cat([self._rows(model.embed_tokens(prev)), h], dim=1)
        z = model.backbone(h_all, grid_positions(0, f + 1, self.grid, current.device), self.ctx)
        return z[:, -self.n:]

    def _backbone_clean(self, frames_tokens, t_start):
        """Append clean frames [B, F, N, c] starting at t_start to the cache."""
        b, nf = frames_tokens.shape[:2]
        h = self._rows(self.model.embed_tokens(frames_tokens.reshape(b, nf * self.n, self.c)))
        pos = grid_positions(t_start, nf, self.grid, frames_tokens.device)
        self.model.backbone(h, pos, self.ctx, self.cache, write=True)


def _check_condition(cond: torch.Tensor, channels: int) -> None:
    if cond.ndim != 5 or cond.shape[2] < 1:
        raise ConfigError(f"cond_latents must be [B, C, T, H, W] with T >= 1, got {tuple(cond.shape)}")
    if cond.shape[1] != channels:
        raise ConfigError(
            f"cond_latents has {cond.shape[1]} channels but the model expects {channels} "
            f"(model.latent_channels); encode the condition with the model's VAE"
        )


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
