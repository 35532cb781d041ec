"""Pretrained diffusers VAEs behind the VideoVAE interface (optional: needs the ``hf`` extra).

The weights come from a local directory saved with ``save_pretrained``; nothing is downloaded.
``DiffusersVAE`` holds what every diffusers class shares (loading, id, export); this module's
``DiffusersFrameVAE`` wraps an image AutoencoderKL frame by frame (temporal compression 1, latent
scale constant = its ``scaling_factor``). The video classes are in ``diffusers_video``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from videomar.errors import ConfigError
from videomar.artifacts.layout import CONFIG_FILE
from videomar.artifacts.storage import atomic_path
from videomar.model.vae.base import VideoVAE


def diffusers_class(name: str, root: str | Path):
    """The diffusers model class ``name`` (the ``_class_name`` of a config.json in ``root``)."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError(f"{root}: a diffusers {name} needs the optional extra: pip install 'videomar[hf]'") from None
    return getattr(diffusers, name)


class DiffusersVAE(VideoVAE):
    """A diffusers autoencoder (``self.model``); subclasses map its latents to the VideoVAE's."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @classmethod
    def from_directory(cls, root: str | Path, class_name: str):
        model = diffusers_class(class_name, root).from_pretrained(str(root), local_files_only=True)
        return cls(model)

    @property
    def class_name(self) -> str:
        return type(self.model).__name__

    def config_dict(self) -> dict:
        """The architecture fields; diffusers' bookkeeping keys (``_name_or_path``...) are left out
        so that the id does not depend on where the weights were loaded from."""
        config = {k: v for k, v in dict(self.model.config).items() if not k.startswith("_")}
        return json.loads(json.dumps(config, default=list))

    def export(self, directory: str) -> None:
        """save_pretrained into a temporary sibling, then move the files in, config.json last."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".vae-export-", dir=out.parent))
        try:
            self.model.save_pretrained(str(staging), safe_serialization=True)
            names = sorted(p.name for p in staging.iterdir() if p.name != CONFIG_FILE) + [CONFIG_FILE]
            for name in names:  # each file whole, config.json last
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(staging / name, tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class DiffusersFrameVAE(DiffusersVAE):
    temporal_compression = 1

    def __init__(self, model):
        shift = model.config.get("shift_factor")
        if shift:
            # The VideoVAE contract has a scale only; a shifted latent space would be misread.
            raise ConfigError(f"AutoencoderKL with shift_factor={shift} is not supported (only scaling_factor)")
        super().__init__(model)

    @classmethod
    def from_directory(cls, root: str | Path, class_name: str = "AutoencoderKL") -> "DiffusersFrameVAE":
        return super().from_directory(root, class_name)

    @property
    def spatial_compression(self) -> int:  # type: ignore[override]
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:  # type: ignore[override]
        return int(self.model.config.latent_channels)

    @property
    def scale(self) -> float:  # type: ignore[override]
        return float(self.model.config.scaling_factor)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t, h, w = pixels.shape
        self.check_pixel_shape(t, h, w)
        frames = pixels.transpose(1, 2).reshape(b * t, 3, h, w)  # [B*T, 3, H, W]
        dist = self.model.encode(frames).latent_dist
        return to_video(dist.mean, b, t), to_video(dist.logvar, b, t)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        frames = self.model.decode(latents.transpose(1, 2).reshape(b * t, c, h, w)).sample
        return to_video(frames, b, t).clamp(-1.0, 1.0)


def to_video(frames: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W]."""
    _, c, h, w = frames.shape
    return frames.reshape(b, t, c, h, w).transpose(1, 2)
