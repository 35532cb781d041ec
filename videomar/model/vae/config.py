"""The built-in causal video VAE's configuration: typed, validated, saved as its config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from videomar.errors import ConfigError

# The ``format`` field of a built-in VAE's config.json, so load_vae can tell it from other kinds.
CONFIG_FORMAT = "videomar-causal-vae"


@dataclass(frozen=True)
class VAEConfig:
    """Shape and size of the causal video VAE.

    ``scale`` is the latent scale constant: latents are multiplied by it before the generative
    model sees them (so they have roughly unit variance) and divided by it before decoding. The
    train-vae job measures it on the training data and writes it here; it is defined nowhere else
    and travels into every latent dataset's metadata.
    """

    latent_channels: int = 16  # C
    temporal_compression: int = 4  # t: T' = (T - 1) // t + 1, frame 0 encoded alone
    spatial_compression: int = 8  # s: H' = H / s
    patch_size: int = 4  # pixels folded into channels before the first convolution (<= s)
    base_channels: int = 32  # channels at the finest level; doubled per level up to max_channels
    max_channels: int = 128
    blocks_per_level: int = 1
    kl_weight: float = 1e-4  # weight of the KL term against the per-pixel MSE in training
    scale: float = 1.0

    @property
    def spatial_levels(self) -> int:
        """Stride-2 spatial downsamplings after the patch fold."""
        return (self.spatial_compression // self.patch_size).bit_length() - 1

    @property
    def temporal_levels(self) -> int:
        return self.temporal_compression.bit_length() - 1

    @property
    def levels(self) -> int:
        return max(self.spatial_levels, self.temporal_levels)

    def channels(self, level: int) -> int:
        return min(self.base_channels * 2**level, self.max_channels)

    def validate(self) -> "VAEConfig":
        for name in ("latent_channels", "base_channels", "max_channels", "blocks_per_level", "patch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vae.{name}={getattr(self, name)} must be >= 1")
        if self.temporal_compression not in (1, 2, 4, 8):
            raise ConfigError(f"vae.temporal_compression={self.temporal_compression}: expected 1, 2, 4 or 8")
        if self.spatial_compression not in (4, 8, 16):
            raise ConfigError(f"vae.spatial_compression={self.spatial_compression}: expected 4, 8 or 16")
        if not _power_of_two(self.patch_size) or self.patch_size > self.spatial_compression:
            raise ConfigError(
                f"vae.patch_size={self.patch_size} must be a power of two no larger than "
                f"vae.spatial_compression={self.spatial_compression}"
            )
        if self.kl_weight < 0:
            raise ConfigError(f"vae.kl_weight={self.kl_weight} must be >= 0")
        if not self.scale > 0:
            raise ConfigError(f"vae.scale={self.scale} must be > 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "vae") -> "VAEConfig":
        data = {k: v for k, v in data.items() if k != "format"}
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise ConfigError(f"{where}.{key}: unknown field; known fields: {', '.join(sorted(names))}")
        try:
            return cls(**data).validate()
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0
