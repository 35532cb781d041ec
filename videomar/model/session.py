"""A streaming generation session (MODEL.md section 6): the condition frames are prefilled once
into a temporal KV cache; each new latent frame starts fully masked and is decided over S spatial
steps on a cosine schedule, each step running only that frame's tokens; the finished frame is
then run once, clean, to write its keys and values to the cache.

    session = StreamSession(model, cond_latents, text, settings, generator)
    frames = session.next(8)          # [B, C, 8, H, W], the next latent frames
    session.switch(text2, "recache")  # a new prompt from here on
    session.close()                   # frees the cache

A stream continues in latent space: its frames never round-trip through pixels. With the
``sink_window`` cache policy it runs without bound in constant memory. ``generate`` is a session
run to its planned length: one code path.

Prompt switches (the cache's sink frames survive every one):
  recache  recompute the retained frames' keys and values under the new prompt (equal to a fresh
           prefill of those frames with it)
  flush    keep only the sink and the last frame, as they were computed; new frames follow them
  cut      a scene cut: keep only the sink; the new scene starts right after it, at a fresh
           temporal position, and attends to nothing of the scene before the cut
"""

from __future__ import annotations

import contextlib

import torch

from videomar.errors import ConfigError
from videomar.model.masking import random_orders, tokens_left_masked
from videomar.model.rng import RowGenerators
from videomar.model.settings import SampleSettings, is_sequence
from videomar.model.text import TextBatch, check_text
from videomar.model.tokens import check_latent_grid, grid_positions, patchify, unpatchify
from videomar.model.videomar import VideoMAR, residual_base

SWITCHES = ("recache", "flush", "cut")
# Frames re-run per backbone call in a recache. Block-causal attention makes a chunked prefill equal
# a whole one; chunks keep its attention matrix small when a full cache holds hundreds of frames.
RECACHE_CHUNK = 8


class StreamSession:
    """The state of one stream: its text context, cache, retained frames and random stream."""

    def __init__(self, model: VideoMAR, cond_latents: torch.Tensor, text: TextBatch,
                 settings: SampleSettings, generator=None):
        cfg = model.config
        check_condition(cond_latents, cfg.latent_channels)
        settings = settings.validate(cond_latents.shape[0])
        self.model, self.s, self.gen = model, settings, row_generators(generator, cond_latents.shape[0])
        self.p = cfg.patch_size
        self.grid = check_latent_grid(cond_latents.shape[-2], cond_latents.shape[-1], self.p)
        tokens = patchify(cond_latents, self.p)  # [B, Tc, N, c]
        self.batch, self.first, self.n, self.c = tokens.shape
        self.dtype, self.device = tokens.dtype, tokens.device
        self.guided = settings.guided
        self.ctx = self._context(text)
        self.done = 0  # frames generated so far
        # The clean tokens of every frame the cache holds (all frames without a cache): [B, N, c]
        # each, by absolute frame index; what a recache and the recompute mode re-run.
        self.frames = {i: tokens[:, i] for i in range(self.first)}
        # The last two frames [B, N, c] each: what a residual model's next frame is a change from.
        self.recent = [tokens[:, i] for i in range(max(0, self.first - 2), self.first)]
        self.cache = None
        if settings.mode != "recompute":
            policy = settings.cache
            if policy.capacity is not None and self.first > policy.capacity:
                raise ConfigError(f"window: {self.first} condition frames exceed sink + window "
                                  f"= {policy.capacity} frames")
            self.cache = model.new_cache(policy, capacity=self.first + settings.frames)
            with _autocast(self.device):
                self._write_clean(tokens)

    # -- the stream --------------------------------------------------------------------------
    @torch.no_grad()
    def next(self, count: int = 1) -> torch.Tensor:
        """The next ``count`` latent frames: [B, C, count, H, W]."""
        if self.ctx is None:
            raise ConfigError("session: closed")
        out = []
        total = self.first + self.s.frames
        with _autocast(self.device):
            for _ in range(count):
                f = self.first + self.done
                temperature = self.s.temperature_at(f, self.first, total)
                frame = self._sample_frame(f, temperature, self.residual_base(), self.frame_hint())
                if self.done:
                    frame = frame.clamp(-self.model.config.frame_clip, self.model.config.frame_clip)
                frame = frame.to(self.dtype)
                self._keep(f, frame)
                if self.cache is not None:
                    self._write_clean(frame[:, None])
                    self._forget()
                self.done += 1
                out.append(frame)
        return unpatchify(torch.stack(out, dim=1), self.p, self.grid)  # [B, C, count, H, W]

    @torch.no_grad()
    def switch(self, text: TextBatch, how: str = "recache") -> None:
        """Generate the following frames for a new prompt (one per sample), switched ``how``."""
        if how not in SWITCHES:
            raise ConfigError(f"switch {how!r}: expected one of {', '.join(SWITCHES)}")
        if self.cache is None:
            raise ConfigError("mode=recompute keeps no cache: prompt switches need kv_cache or token_by_token")
        self.ctx = self._context(text)
        held = self.cache.retained_frames()
        sink = [f for f in held if f < self.cache.policy.sink]
        if how == "recache":
            self.cache.reset(held)
            with _autocast(self.device):
                for i in range(0, len(held), RECACHE_CHUNK):  # chunked: attention memory stays bounded
                    self._write_clean(torch.stack([self.frames[f] for f in held[i:i + RECACHE_CHUNK]], dim=1))
        else:
            self.cache.keep(sink + held[-1:] if how == "flush" else sink)
        self._forget()

    def close(self) -> None:
        """Free the cache and frames; the session answers no more calls."""
        self.cache, self.frames, self.ctx = None, {}, None

    # -- one frame ---------------------------------------------------------------------------
    def _keep(self, f: int, frame: torch.Tensor) -> None:
        """Hold finished frame f [B, N, c]: for recaches and recompute, and as a residual base."""
        self.frames[f] = frame
        self.recent = [*self.recent, frame][-2:]

    def residual_base(self) -> torch.Tensor | None:
        """What the next frame is a change from, for a residual model ([B, N, c]); else None."""
        cfg = self.model.config
        if not cfg.residual:
            return None
        return residual_base(*self._last_two(), cfg.residual_momentum)

    def frame_hint(self) -> torch.Tensor | None:
        """What the next frame's masked tokens see of the last two frames ([B, N, D]); else None."""
        if not self.model.config.motion_hint:
            return None
        return self.model.frame_hint(*self._last_two(), self.grid)

    def _last_two(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(last, before) [B, N, c] and how many frames precede the next one [B]; a frame not
        there is zeros, which residual_base and frame_hint ignore by that count."""
        zeros = torch.zeros(self.batch, self.n, self.c, device=self.device, dtype=self.dtype)
        before, last = ([zeros, zeros] + self.recent)[-2:]
        return last, before, torch.full((self.batch,), len(self.recent), device=self.device)

    def _sample_frame(self, f: int, temperature, base: torch.Tensor | None = None,
                      hint: torch.Tensor | None = None) -> torch.Tensor:
        b, n = self.batch, self.n
        if self.s.mode == "token_by_token":
            orders = torch.arange(n, device=self.device).expand(b, n)  # raster order
            steps = n
        else:
            orders = random_orders(b, n, self.device, self.gen)
            steps = min(self.s.steps, n)
        ranks = orders.argsort(dim=1)
        current = torch.zeros(b, n, self.c, device=self.device, dtype=self.dtype)
        remaining = n
        for step in range(steps):
            left = tokens_left_masked(n, step, steps, remaining)
            masked = ranks < remaining  # [B, N]: the tokens not yet decided
            decide = masked & (ranks >= left)  # this step's tokens
            z = self._backbone_frame(current, masked, f, hint)  # [rows, N, D]
            scale = self.s.guidance_at((n - left) / n)
            current[decide] = self._sample_tokens(z, decide, temperature, scale)
            if base is not None:  # a residual model draws changes
                current[decide] += base[decide]
            remaining = left
        return current

    def _sample_tokens(self, z, decide, temperature, scale):
        if self.guided:
            cond, uncond = z.chunk(2)
            zs = torch.cat([cond[decide], uncond[decide]])  # [2k, D]
        else:
            zs = z[decide]  # [k, D]
        scale = _per_token(scale, decide) if self.guided else 1.0
        temperature = _per_token(temperature, decide)
        return self.model.head.sample(zs.float(), temperature, scale, self.gen).to(z.dtype)

    # -- backbone calls ----------------------------------------------------------------------
    def _context(self, text: TextBatch):
        check_text(text, self.batch, self.model.config.text_encoder)
        text = text.to(self.device)
        if self.guided:  # rows [0, B) conditional, [B, 2B) the learned null text
            drop = torch.arange(2 * self.batch, device=self.device) >= self.batch
            return self.model.encode_text(text.repeat(2), drop)
        return self.model.encode_text(text)

    def _rows(self, h):
        return torch.cat([h, h]) if self.guided else h

    def _backbone_frame(self, current, masked, f, hint=None):
        """The current frame (decided tokens clean, others mask_token + hint) -> z [rows, N, D]."""
        model = self.model
        h = self._rows(model.embed_tokens(current, masked, hint))
        if self.cache is not None:
            pos = grid_positions(self.cache.next_position, 1, self.grid, self.device)
            return model.backbone(h, pos, self.ctx, self.cache)
        prev = torch.stack([self.frames[i] for i in range(f)], dim=1).reshape(self.batch, -1, self.c)  # [B, f*N, c]
        h_all = torch.cat([self._rows(model.embed_tokens(prev)), h], dim=1)
        z = model.backbone(h_all, grid_positions(0, f + 1, self.grid, self.device), self.ctx)
        return z[:, -self.n:]

    def _write_clean(self, frames_tokens):
        """Write clean frames [B, F, N, c] to the cache, after the frames it holds."""
        b, nf = frames_tokens.shape[:2]
        h = self._rows(self.model.embed_tokens(frames_tokens.reshape(b, nf * self.n, self.c)))
        pos = grid_positions(self.cache.next_position, nf, self.grid, self.device)
        self.model.backbone(h, pos, self.ctx, self.cache, write=True)

    def _forget(self) -> None:
        """Drop the tokens of frames the cache no longer holds: memory stays bounded."""
        held = set(self.cache.retained_frames())
        self.frames = {i: t for i, t in self.frames.items() if i in held}


def row_generators(generator, batch: int):
    """One generator, None, or a sequence of B generators (one random stream per sample)."""
    if not is_sequence(generator):
        return generator
    if len(generator) != batch:
        raise ConfigError(f"generator: {len(generator)} per-sample generators for a batch of {batch}")
    return RowGenerators(generator)


def _per_token(value, decide):
    """A float stays a float; per-sample values [B] become per-token [k, 1] for the decided tokens."""
    if not is_sequence(value):
        return value
    rows = torch.tensor(value, dtype=torch.float32, device=decide.device)  # [B]
    return rows[:, None].expand_as(decide)[decide][:, None]  # [k, 1], row-major like z[decide]


def check_condition(cond: torch.Tensor, channels: int) -> None:
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
