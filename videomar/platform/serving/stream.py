"""Streaming generation on a loaded engine: one video, made and decoded a latent frame at a time,
with prompt switches and scene cuts at given frames and a cache policy that bounds memory.

Frames are pixel frames of the output video, the condition image included as frame 0 (as for
every serving path). A switch at pixel frame p applies from the latent frame that holds p:
latent frame ``1 + (p - 1) // temporal_compression``. Each latent frame is decoded once, right
after it is made (the causal VAE keeps its state between chunks), so the first frames are out
long before the last is computed, and a stream never round-trips through pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from videomar.artifacts.media import to_uint8_frames
from videomar.errors import ConfigError, UserError
from videomar.model.cache import CachePolicy
from videomar.model.session import SWITCHES, StreamSession
from videomar.model.settings import SampleSettings, progressive_temperature
from videomar.platform.serving.engine import Engine, Job


@dataclass(frozen=True)
class StreamPlan:
    """What changes while a stream runs. ``prompts``: (pixel frame, prompt) in increasing frame
    order, the job's prompt applying before the first; ``cuts``: pixel frames where a new scene
    starts; ``switch``: how a prompt change applies (recache, flush or cut)."""

    sink: int = 1
    window: int | None = None  # None: keep every frame (the full policy)
    prompts: tuple[tuple[int, str], ...] = ()
    cuts: tuple[int, ...] = ()
    switch: str = "recache"

    @property
    def policy(self) -> CachePolicy:
        kind = "full" if self.window is None else "sink_window"
        return CachePolicy(kind, self.sink, self.window).validate()

    def check(self, frames: int, name: Callable[[str], str] = lambda f: f) -> "StreamPlan":
        """UserError naming the field (through ``name``) when the plan does not fit ``frames``."""
        if self.switch not in SWITCHES:
            raise UserError(f"{name('switch')}: {self.switch!r}; expected one of {', '.join(SWITCHES)}")
        try:
            self.policy
        except ConfigError as err:  # it names sink or window
            raise UserError(f"{name('sink' if str(err).startswith('sink') else 'window')}: {err}") from None
        for where, at in [("prompts", f) for f, _ in self.prompts] + [("cut_at", f) for f in self.cuts]:
            if not 0 <= at < frames:
                raise UserError(f"{name(where)}: frame {at} is outside the video's frames 0..{frames - 1}")
        if 0 in self.cuts:
            raise UserError(f"{name('cut_at')}: frame 0 is the image; a cut needs a later frame")
        if [f for f, _ in self.prompts] != sorted({f for f, _ in self.prompts}):
            raise UserError(f"{name('prompts')}: frames must increase and appear once")
        return self


def parse_prompts(text: str, flag: str = "--prompts") -> tuple[tuple[int, str], ...]:
    """"0:a 3 moving left;60:a 3 moving up" -> ((0, "a 3 moving left"), (60, "a 3 moving up"))."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        frame, sep, prompt = part.partition(":")
        if not sep or not frame.strip().isdigit():
            raise UserError(f"{flag}: {part!r} is not FRAME:PROMPT (e.g. \"0:a 3 moving left;60:a 3 moving up\")")
        out.append((int(frame), prompt.strip()))
    return tuple(out)


def latent_index(engine: Engine, pixel_frame: int) -> int:
    """The latent frame holding pixel frame p (p >= 1); pixel frame 0 is latent frame 0."""
    return 0 if pixel_frame == 0 else 1 + (pixel_frame - 1) // engine.vae.temporal_compression


def _events(engine: Engine, plan: StreamPlan) -> dict[int, tuple[str | None, str]]:
    """latent frame -> (new prompt or None, how); a cut wins over the plan's switch there."""
    events: dict[int, tuple[str | None, str]] = {}
    for frame, prompt in plan.prompts:
        if frame:  # a prompt at frame 0 is the stream's first prompt, not a switch
            events[latent_index(engine, frame)] = (prompt, plan.switch)
    for frame in plan.cuts:
        at = latent_index(engine, frame)
        events[at] = (events.get(at, (None, ""))[0], "cut")
    return events


@torch.no_grad()
def stream_video(engine: Engine, job: Job, plan: StreamPlan,
                 progress: Callable[[int, int], None] | None = None,
                 control: Callable[[], list[tuple[str | None, str]]] | None = None,
                 step: Callable[[StreamSession], torch.Tensor] | None = None) -> Iterator[np.ndarray]:
    """The video of ``job`` as it is made: chunks of uint8 frames [T, H, W, 3] (frame 0 first),
    ``job.frames`` frames in all. ``progress(done, total)`` is called after each chunk;
    ``control()``, before each generated frame, returns the switches asked for meanwhile:
    (new prompt or None, how), applied in order after the plan's. ``step(session)`` makes the
    session's next latent frame (default ``session.next(1)``; a server batches streams there)."""
    total = engine.latent_frames_to_generate(job.frames)
    initial = [p for f, p in plan.prompts if latent_index(engine, f) == 0]
    prompt = initial[-1] if initial else job.prompt
    settings = SampleSettings(total, job.steps, job.cfg, job.temperature or progressive_temperature,
                              cache=plan.policy)
    cond = engine.condition([job.image])  # [1, C, 1, H', W']
    session = StreamSession(engine.model, cond, engine.model.tokenize([prompt]), settings,
                            torch.Generator(device=engine.device).manual_seed(job.seed))
    decoder = engine.vae.stream_decoder()
    events = _events(engine, plan)
    sent = 0
    try:
        for latent in range(total + 1):
            asked = [events[latent]] if latent in events else []
            for new, how in asked + (control() if control is not None and latent else []):
                prompt = new if new is not None else prompt
                session.switch(engine.model.tokenize([prompt]), how)
            chunk = cond if latent == 0 else (step(session) if step else session.next(1))  # [1, C, 1, H', W']
            pixels = decoder.decode(chunk / engine.vae.scale).clamp(-1.0, 1.0)[0]  # [3, t, H, W]
            frames = to_uint8_frames(pixels)[: job.frames - sent]
            sent += len(frames)
            if progress is not None:
                progress(sent, job.frames)
            if len(frames):
                yield frames
    finally:
        session.close()


def trained_horizon(engine: Engine) -> int | None:
    """Latent frames the export's stage trained on (None when the export does not say)."""
    shape = (engine.config.get("latent") or {}).get("shape")
    return int(shape[1]) if shape else None
