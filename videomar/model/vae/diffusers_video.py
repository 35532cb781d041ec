"""Pretrained diffusers video VAEs (Wan, Cosmos, CogVideoX, LTX-Video) behind the VideoVAE interface.

Each class compresses time causally (frame 0 alone, then ``t`` frames per latent frame) and space
by its own factors, which are read from its config.json, the same numbers its diffusers class
builds its layers from. Their latents are normalised here, so the rest of videomar sees one latent
space per VAE: ``encode`` returns ``(z - latents_mean) / latents_std`` (per channel; Cosmos's
statistics may also vary per latent frame) and ``decode`` undoes it; the ``scaling_factor`` stays
the VideoVAE's ``scale``, applied by training and sampling like the built-in VAE's.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from videomar.errors import ConfigError
from videomar.model.vae.diffusers_vae import DiffusersVAE

# Encoders without a variance (Cosmos) give this log-variance: a posterior sample is its mean.
DETERMINISTIC_LOGVAR = -30.0


def _log2(n: float) -> int:
    return int(math.log2(n))


def _wan(c: dict) -> tuple[int, int, int]:
    patch = c.get("patch_size") or 1
    return 2 ** sum(bool(d) for d in c["temperal_downsample"]), patch * 2 ** (len(c["dim_mult"]) - 1), c["z_dim"]


def _cosmos(c: dict) -> tuple[int, int, int]:
    # CosmosEncoder3d: the patch folds p frames and p x p pixels; then at most len(blocks) - 2
    # downsamplings, each halving time and/or space while the configured ratio is not reached.
    p, levels = c["patch_size"], len(c["encoder_block_out_channels"]) - 2
    t = p * 2 ** min(_log2(c["temporal_compression_ratio"]) - _log2(p), levels)
    s = p * 2 ** min(_log2(c["spatial_compression_ratio"]) - _log2(p), levels)
    return t, s, c["latent_channels"]


def _cogvideox(c: dict) -> tuple[int, int, int]:
    levels = len(c["block_out_channels"]) - 1  # every block but the last halves space
    return 2 ** min(_log2(c["temporal_compression_ratio"]), levels), 2 ** levels, c["latent_channels"]


def _ltx(c: dict) -> tuple[int, int, int]:
    scaled = 2 ** sum(bool(v) for v in c["spatio_temporal_scaling"])
    t = c.get("temporal_compression_ratio") or c.get("patch_size_t", 1) * scaled
    s = c.get("spatial_compression_ratio") or c["patch_size"] * scaled
    return t, s, c["latent_channels"]


# _class_name -> (temporal compression, spatial compression, latent channels) from config.json.
GEOMETRY: dict[str, Callable[[dict], tuple[int, int, int]]] = {
    "AutoencoderKLWan": _wan,
    "AutoencoderKLCosmos": _cosmos,
    "AutoencoderKLCogVideoX": _cogvideox,
    "AutoencoderKLLTXVideo": _ltx,
}


def video_geometry(config: dict, where: str) -> tuple[int, int, int]:
    """(temporal, spatial, channels) of a diffusers video VAE from its config.json contents."""
    name = config.get("_class_name")
    try:
        return tuple(int(v) for v in GEOMETRY[name](config))  # type: ignore[return-value]
    except KeyError as err:
        raise ConfigError(f"{where}: a {name} config without the field {err}") from None


class DiffusersVideoVAE(DiffusersVAE):
    """A diffusers video autoencoder with causal temporal compression."""

    def __init__(self, model):
        name = type(model).__name__
        shift = model.config.get("shift_factor")
        if shift:  # the VideoVAE contract has a scale only; a shifted latent space would be misread
            raise ConfigError(f"{name} with shift_factor={shift} is not supported")
        super().__init__(model)
        t, s, c = video_geometry(dict(model.config, _class_name=name), name)
        self._geometry = (t, s, c)
        mean, std = latent_stats(model, c)
        self.register_buffer("latents_mean", mean, persistent=False)  # [C, K], K = 1 or one per latent frame
        self.register_buffer("latents_std", std, persistent=False)

    temporal_compression = property(lambda self: self._geometry[0])  # type: ignore[assignment]
    spatial_compression = property(lambda self: self._geometry[1])  # type: ignore[assignment]
    latent_channels = property(lambda self: self._geometry[2])  # type: ignore[assignment]

    @property
    def scale(self) -> float:  # type: ignore[override]
        return float(self.model.config.get("scaling_factor") or 1.0)

    def normalization(self) -> dict:
        return {"latents_mean": self.latents_mean.tolist(), "latents_std": self.latents_std.tolist(),
                "scaling_factor": self.scale}

    def check_pixel_shape(self, frames: int, height: int, width: int) -> None:
        super().check_pixel_shape(frames, height, width)
        t = self.temporal_compression
        if (frames - 1) % t:
            raise ValueError(f"clip shape frames={frames} does not fit this {self.class_name}: frames must be 1 + a "
                             f"multiple of its temporal compression {t} (frame 0 is encoded alone)")

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, t, h, w = pixels.shape
        self.check_pixel_shape(t, h, w)
        dist = self.model.encode(pixels).latent_dist
        mean = dist.mean if hasattr(dist, "mean") else dist.mode()  # [B, C, T', H', W']
        logvar = dist.logvar if hasattr(dist, "logvar") else torch.full_like(mean, DETERMINISTIC_LOGVAR)
        self.check_shape("encoded", (t, h, w), mean.shape[1:], self.latent_shape(t, h, w))
        m, s = self.stats_for(mean.shape[2], mean)
        return (mean - m) / s, logvar - 2.0 * torch.log(s)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        m, s = self.stats_for(latents.shape[2], latents)
        z = latents * s + m
        extra = {}
        if self.model.config.get("timestep_conditioning"):  # LTX 0.9.1+: decode at noise level 0
            extra["temb"] = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        pixels = self.model.decode(z, **extra).sample  # [B, 3, T, H, W]
        _, c, t, h, w = latents.shape
        s = self.spatial_compression
        self.check_shape("decoded", (t, h, w), pixels.shape[1:], (3, (t - 1) * self.temporal_compression + 1, h * s, w * s))
        return pixels.clamp(-1.0, 1.0)

    def check_shape(self, verb: str, given: tuple, got, expected: tuple) -> None:
        """A class whose layers do not give the shapes its config.json implies is refused, by name."""
        if tuple(got) != tuple(expected):
            raise ConfigError(f"{self.class_name} {verb} a {'x'.join(map(str, given))} input to {list(got)}, but its "
                              f"config.json implies {list(expected)}; its compression settings do not fit its blocks")

    def stats_for(self, frames: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latents_mean and latents_std broadcastable to [B, C, T', H', W'] (T' = ``frames``)."""
        mean, std = self.latents_mean, self.latents_std  # [C, K]
        if mean.shape[1] > 1:  # per latent frame: the first T' (the last one repeated past K)
            index = torch.arange(frames, device=mean.device).clamp(max=mean.shape[1] - 1)
            mean, std = mean[:, index], std[:, index]
        shape = (1, mean.shape[0], mean.shape[1], 1, 1)
        return mean.reshape(shape).to(like), std.reshape(shape).to(like)


def latent_stats(model, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's latents_mean and latents_std as float32 [C, K] (zeros and ones when it has none):
    a config field (Wan, Cosmos, CogVideoX) or a weights buffer (LTX-Video)."""
    out = []
    for name, default in (("latents_mean", 0.0), ("latents_std", 1.0)):
        value = model.config.get(name)
        if value is None:
            value = dict(model.named_buffers()).get(name)
        tensor = torch.full((channels,), default) if value is None else torch.as_tensor(value, dtype=torch.float32)
        flat = tensor.detach().float().cpu().reshape(-1)
        if flat.numel() % channels:
            raise ConfigError(f"{type(model).__name__}: {name} has {flat.numel()} values, not a multiple of its "
                              f"{channels} latent channels")
        out.append(flat.reshape(channels, -1))
    if not bool((out[1] > 0).all()):
        raise ConfigError(f"{type(model).__name__}: latents_std must be positive")
    return out[0], out[1]
