"""What a sampling run is asked for: frames, spatial steps, guidance, temperature, mode; checked
before any work starts, each message naming the argument at fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from videomar.errors import ConfigError
from videomar.model.cache import CachePolicy
from videomar.model.config import LATENT_CLIP  # noqa: F401 -- re-exported: the sampler's public names

MODES = ("kv_cache", "recompute", "token_by_token")
TemperatureSchedule = Callable[[int, int, int], float]
Temperature = float | TemperatureSchedule


def progressive_temperature(frame: int, first: int, total: int) -> float:
    """Default temperature of frame `frame` (absolute index) when generation starts at `first`
    and is planned to end before `total`: decays linearly from 0.95 towards 0.90, and stays at
    0.90 when a stream runs past its planned length."""
    return 0.95 - 0.05 * min((frame - first) / max(total - first, 1), 1.0)


@dataclass(frozen=True)
class SampleSettings:
    frames: int  # latent frames to generate after the condition frames (a stream's planned length)
    steps: int = 64  # spatial steps per frame
    # Guidance scale reached at the end of each frame; 1 disables guidance. Or one per sample.
    cfg: float | Sequence[float] = 3.0
    temperature: Temperature | Sequence[Temperature] = progressive_temperature  # or one per sample
    mode: str = "kv_cache"
    cache: CachePolicy = CachePolicy()  # which finished frames the KV cache keeps

    def validate(self, batch: int | None = None) -> "SampleSettings":
        if self.frames < 1:
            raise ConfigError(f"frames={self.frames}: generate at least one frame")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}: need at least one spatial step per frame")
        for name in ("cfg", "temperature"):
            values = getattr(self, name)
            if is_sequence(values) and batch is not None and len(values) != batch:
                raise ConfigError(f"{name}: {len(values)} per-sample values for a batch of {batch}")
        for c in _as_list(self.cfg):
            if c < 1.0:
                raise ConfigError(f"cfg={c}: the guidance scale must be >= 1 (1 disables guidance)")
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        self.cache.validate()
        if self.mode == "recompute" and self.cache.kind != "full":
            raise ConfigError("mode=recompute keeps no cache: it needs the full cache policy")
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
        if is_sequence(self.cfg):
            return [1.0 + (c - 1.0) * done for c in self.cfg]
        return 1.0 + (self.cfg - 1.0) * done

    def temperature_at(self, frame: int, first: int, total: int) -> float | list[float]:
        """The temperature of a frame: one float, or one per sample."""
        def value(t: Temperature) -> float:
            return float(t(frame, first, total)) if callable(t) else float(t)

        if is_sequence(self.temperature):
            return [value(t) for t in self.temperature]
        return value(self.temperature)


def is_sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def _as_list(value) -> list:
    return list(value) if is_sequence(value) else [value]
