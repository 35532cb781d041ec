"""The interface every video VAE offers to the rest of videomar.

Pixels are ``[B, 3, T, H, W]`` floats in [-1, 1]; latents are ``[B, C, T', H', W']`` with
``T' = (T - 1) // temporal_compression + 1`` and ``H' = H / spatial_compression``. Encoding gives
the posterior moments (mean, logvar) so that a dataset can store them and training can draw a
fresh sample per epoch.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from videomar.artifacts.layout import CONFIG_FILE, WEIGHTS_FILE
from videomar.artifacts.storage import atomic_path


class VideoVAE(nn.Module, ABC):
    temporal_compression: int
    spatial_compression: int
    latent_channels: int
    scale: float  # multiply latents by it before the generative model, divide before decode

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [B, 3, T, H, W] in [-1, 1] -> (mean, logvar), each [B, C, T', H', W']."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, T', H', W'] (unscaled) -> pixels [B, 3, T, H, W] in [-1, 1]."""

    def stream_decoder(self):
        """An object whose ``decode(latents)`` decodes a latent stream chunk by chunk, each call
        the next latent frames. This default decodes each chunk alone, which is exact for VAEs
        that decode every latent frame on its own; VAEs with temporal state override it."""
        return self

    @abstractmethod
    def export(self, directory: str) -> None:
        """Write weights (safetensors) and config.json so that load_vae(directory) restores it."""

    @abstractmethod
    def config_dict(self) -> dict:
        """The JSON-able description of this VAE (what its config.json holds)."""

    @property
    def class_name(self) -> str:
        """The kind of VAE, as its config.json names it."""
        return type(self).__name__

    def normalization(self) -> dict:
        """How encode() normalises the latents beyond ``scale`` (per-channel statistics); empty
        when it does not."""
        return {}

    def summary(self) -> dict:
        """What a dataset manifest records about the VAE its latents came from."""
        return {"class_name": self.class_name, "temporal_compression": int(self.temporal_compression),
                "spatial_compression": int(self.spatial_compression), "latent_channels": int(self.latent_channels),
                "scale": float(self.scale), **self.normalization()}

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a clip of ``frames`` x ``height`` x ``width`` pixels."""
        self.check_pixel_shape(frames, height, width)
        s = self.spatial_compression
        return (self.latent_channels, (frames - 1) // self.temporal_compression + 1, height // s, width // s)

    def check_pixel_shape(self, frames: int, height: int, width: int) -> None:
        s = self.spatial_compression
        if frames < 1 or height % s or width % s or height < s or width < s:
            raise ValueError(
                f"clip shape frames={frames}, height={height}, width={width} does not fit this VAE: "
                f"height and width must be positive multiples of its spatial compression {s}"
            )

    @property
    def vae_id(self) -> str:
        """A content hash of the configuration and weights: equal ids mean equal encoders."""
        h = hashlib.sha256()
        h.update(repr(sorted(self.config_dict().items())).encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw from N(mean, exp(logvar)) (same shape as mean)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


def export_files(directory: str, write_weights: Callable[[str], None], config: dict) -> None:
    """Write ``WEIGHTS_FILE`` (via ``write_weights(path)``) and then ``CONFIG_FILE`` into a local
    directory, each atomically, config last: a directory with a config.json has whole weights."""
    out = Path(directory)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        write_weights(str(tmp))
    with atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
