"""The autoregressive sampler: ``generate`` continues condition latents by a number of frames.
It is a streaming session (session.StreamSession) run to its end.

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

from typing import Sequence

import torch

from videomar.model.cache import CachePolicy
from videomar.model.session import StreamSession
from videomar.model.settings import (  # noqa: F401 -- the sampler's public names
    LATENT_CLIP, MODES, SampleSettings, Temperature, progressive_temperature,
)
from videomar.model.text import TextBatch
from videomar.model.videomar import VideoMAR


@torch.no_grad()
def generate(model: VideoMAR, cond_latents: torch.Tensor, text: TextBatch, frames: int, steps: int = 64,
             cfg: float | Sequence[float] = 3.0,
             temperature: Temperature | Sequence[Temperature] = progressive_temperature,
             mode: str = "kv_cache",
             generator: torch.Generator | Sequence[torch.Generator] | None = None,
             cache: CachePolicy | None = None) -> torch.Tensor:
    """Continue cond_latents [B, C, Tc, H, W] (scaled latents of the image or prefix frames) by
    `frames` latent frames for the prompts in `text`: returns [B, C, Tc + frames, H, W].

    cfg and temperature may be lists of B per-sample values, generator a list of B generators
    (one random stream per sample). ``cache`` chooses which finished frames the KV cache keeps
    (default: every frame). This is a StreamSession run to its end."""
    batch = cond_latents.shape[0] if cond_latents.ndim == 5 else None  # else the session refuses it
    settings = SampleSettings(frames, steps, cfg, temperature, mode, cache or CachePolicy()).validate(batch)
    session = StreamSession(model, cond_latents, text, settings, generator)
    try:
        return torch.cat([cond_latents, session.next(frames)], dim=2)
    finally:
        session.close()
