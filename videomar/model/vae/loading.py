"""load_vae: restore any supported VAE from a local directory through the VideoVAE interface;
vae_geometry: its compression and latent channels from config.json alone (no weights loaded)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from videomar.artifacts.layout import CONFIG_FILE, WEIGHTS_FILE
from videomar.errors import ConfigError
from videomar.model.vae.base import VideoVAE
from videomar.model.vae.causal import CausalVideoVAE
from videomar.model.vae.config import CONFIG_FORMAT, VAEConfig
from videomar.model.vae.diffusers_vae import DiffusersFrameVAE
from videomar.model.vae.diffusers_video import GEOMETRY, DiffusersVideoVAE, video_geometry

IMAGE_CLASS = "AutoencoderKL"  # a diffusers image VAE, run frame by frame


def read_config(directory: str | Path) -> dict:
    """The parsed config.json of a VAE directory; FileNotFoundError or ConfigError name it."""
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no VAE config here; export a VAE to {directory} first")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{config_path}: not valid JSON: {err}") from None
    check_kind(config, str(config_path))
    return config


def check_kind(config: dict, where: str) -> None:
    """ConfigError naming ``where`` unless the config.json is of a VAE kind videomar loads."""
    if config.get("format") != CONFIG_FORMAT and config.get("_class_name") not in (IMAGE_CLASS, *GEOMETRY):
        raise ConfigError(
            f"{where}: unknown VAE kind {config.get('_class_name') or config.get('format')!r}; expected "
            f"format {CONFIG_FORMAT!r} (a videomar VAE export) or a diffusers config whose _class_name is one of "
            f"{', '.join([IMAGE_CLASS, *GEOMETRY])}"
        )


def vae_geometry(config: dict, where: str = "vae") -> tuple[int, int, int]:
    """(temporal compression, spatial compression, latent channels) from a VAE's config.json."""
    check_kind(config, where)
    if config.get("format") == CONFIG_FORMAT:
        c = VAEConfig.from_dict(config, where=where)
        return c.temporal_compression, c.spatial_compression, c.latent_channels
    if config.get("_class_name") == IMAGE_CLASS:
        return 1, 2 ** (len(config.get("block_out_channels", [64])) - 1), int(config.get("latent_channels", 4))
    return video_geometry(config, where)


def load_vae(directory: str | Path) -> VideoVAE:
    """A VAE from ``directory``: a built-in causal VAE export, or a diffusers VAE saved with
    ``save_pretrained`` (AutoencoderKL frame by frame, or a video class of GEOMETRY; needs the
    ``hf`` extra). Nothing is downloaded. The VAE is returned in eval mode on the CPU."""
    root = Path(directory)
    config = read_config(root)
    name = config.get("_class_name")
    if config.get("format") == CONFIG_FORMAT:
        vae: VideoVAE = load_causal(root, config)
    elif name == IMAGE_CLASS:
        vae = DiffusersFrameVAE.from_directory(root)
    else:
        vae = DiffusersVideoVAE.from_directory(root, name)
    return vae.eval()


def load_causal(root: Path, config: dict) -> CausalVideoVAE:
    vae = CausalVideoVAE(VAEConfig.from_dict(config, where=str(root / CONFIG_FILE)))
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: VAE weights missing")
    missing, unexpected = vae.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{weights}: weights do not match {CONFIG_FILE} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return vae
