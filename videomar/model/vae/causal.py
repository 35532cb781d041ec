"""The built-in causal video VAE.

Every temporal operation looks only backwards (front padding with the first frame), so latent
frame 0 depends on pixel frame 0 alone and an image is a one-frame video. Pixels are folded into
channels by ``patch_size`` first, which keeps the convolutions cheap at small resolutions.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from videomar.model.vae.base import VideoVAE, export_files, sample_posterior
from videomar.model.vae.config import CONFIG_FORMAT, VAEConfig

LOGVAR_RANGE = (-30.0, 20.0)


class CausalConv3d(nn.Module):
    """3D convolution padded in time only at the front (with copies of the first frame). While a
    StreamDecoder decodes on this thread, a chunk is padded with the last input frames of the
    chunk before it instead, so chunk-by-chunk outputs join into the whole-clip output."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: tuple[int, int] = (1, 1)):
        super().__init__()
        self.time_pad = kernel - 1
        self.conv = nn.Conv3d(cin, cout, kernel, stride=(stride[0], stride[1], stride[1]),
                              padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W]
        if self.time_pad:
            stream = _streaming()
            before = None if stream is None else stream.get(id(self))
            if before is None:
                before = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([before, x], dim=2)
            if stream is not None:
                stream[id(self)] = x[:, :, -self.time_pad:]  # [B, C, time_pad, H, W]
        return self.conv(x)


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame separately, so statistics never mix past and future frames."""

    def __init__(self, channels: int):
        super().__init__(math.gcd(channels, 8), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W]
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = FrameNorm(cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Upsample(nn.Module):
    """x2 in space and/or time; in time the first frame stays single: T -> 2T - 1."""

    def __init__(self, channels: int, cout: int, time: bool, space: bool):
        super().__init__()
        self.time, self.space = time, space
        self.conv = CausalConv3d(channels, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time:
            stream = _streaming()
            started = stream is not None and stream.setdefault(id(self), False)
            x = x.repeat_interleave(2, dim=2)[:, :, (0 if started else 1):]  # only the clip's frame 0 stays single
            if stream is not None:
                stream[id(self)] = True
        if self.space:
            b, c, t, h, w = x.shape
            x = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), scale_factor=2, mode="nearest")
            x = x.reshape(b, t, c, 2 * h, 2 * w).transpose(1, 2)
        return self.conv(x)


def fold(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C*p*p, T, H/p, W/p]."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def unfold(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C*p*p, T, H, W] -> [B, C, T, H*p, W*p] (the inverse of fold)."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, t, h * p, w * p)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(3 * cfg.patch_size**2, cfg.channels(0))
        layers: list[nn.Module] = []
        for level in range(cfg.levels + 1):
            ch = cfg.channels(level)
            layers += [ResBlock(ch, ch) for _ in range(cfg.blocks_per_level)]
            if level < cfg.levels:
                stride = (2 if level < cfg.temporal_levels else 1, 2 if level < cfg.spatial_levels else 1)
                layers.append(CausalConv3d(ch, cfg.channels(level + 1), stride=stride))
        self.body = nn.Sequential(*layers)
        top = cfg.channels(cfg.levels)
        self.norm_out = FrameNorm(top)
        self.conv_out = CausalConv3d(top, 2 * cfg.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T, H, W] -> [B, 2C, T', H', W']
        h = self.body(self.conv_in(fold(x, self.patch)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(cfg.latent_channels, cfg.channels(cfg.levels))
        layers: list[nn.Module] = []
        for level in reversed(range(cfg.levels + 1)):
            ch = cfg.channels(level)
            layers += [ResBlock(ch, ch) for _ in range(cfg.blocks_per_level)]
            if level > 0:
                up_time, up_space = level - 1 < cfg.temporal_levels, level - 1 < cfg.spatial_levels
                layers.append(Upsample(ch, cfg.channels(level - 1), up_time, up_space))
        self.body = nn.Sequential(*layers)
        self.norm_out = FrameNorm(cfg.channels(0))
        self.conv_out = CausalConv3d(cfg.channels(0), 3 * cfg.patch_size**2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, C, T', H', W'] -> [B, 3, T, H, W]
        h = self.body(self.conv_in(z))
        return unfold(self.conv_out(F.silu(self.norm_out(h))), self.patch)


class CausalVideoVAE(VideoVAE):
    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = (config or VAEConfig()).validate()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    # The VideoVAE properties, read from the config.
    temporal_compression = property(lambda self: self.config.temporal_compression)  # type: ignore[assignment]
    spatial_compression = property(lambda self: self.config.spatial_compression)  # type: ignore[assignment]
    latent_channels = property(lambda self: self.config.latent_channels)  # type: ignore[assignment]
    scale = property(lambda self: self.config.scale)  # type: ignore[assignment]
    class_name = CONFIG_FORMAT  # type: ignore[assignment]  # what its config.json's ``format`` says

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, t, h, w = pixels.shape
        self.check_pixel_shape(t, h, w)
        mean, logvar = self.encoder(pixels).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents).clamp(-1.0, 1.0)

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    def reconstruction_loss(self, pixels: torch.Tensor, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training objective: per-pixel MSE of a posterior sample's decoding + kl_weight * KL.

        pixels [B, 3, T, H, W] with T = k * temporal_compression + 1, so the decoding has T frames.
        Returns the scalar loss and detached parts (mse, kl).
        """
        mean, logvar = self.encode(pixels)
        recon = self.decoder(sample_posterior(mean, logvar, generator))
        mse = F.mse_loss(recon, pixels[:, :, : recon.shape[2]])
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return mse + self.config.kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}

    def with_scale(self, scale: float) -> "CausalVideoVAE":
        """This VAE (same weights) carrying a new latent scale constant."""
        self.config = dataclasses.replace(self.config, scale=float(scale)).validate()
        return self

    def export(self, directory: str) -> None:
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        export_files(directory, lambda path: save_file(state, path), self.config_dict())


_THREAD = threading.local()  # .stream: the state of the StreamDecoder decoding on this thread


def _streaming() -> dict | None:
    return getattr(_THREAD, "stream", None)


class StreamDecoder:
    """Decodes a latent stream chunk by chunk, never re-decoding a frame: every causal
    convolution keeps the last frames of its input from the previous chunk. The chunks' pixels
    joined equal the whole clip's decoding. The state is the calling thread's, so streams on
    other threads, and plain decodes, share the VAE safely."""

    def __init__(self, vae: CausalVideoVAE):
        self.vae = vae
        self.state: dict = {}

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The next latent frames [B, C, T', H', W'] (unscaled) -> their pixels [B, 3, T, H, W]."""
        _THREAD.stream = self.state
        try:
            return self.vae.decode(latents)
        finally:
            _THREAD.stream = None
