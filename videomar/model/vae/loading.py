"""load_vae: restore any supported VAE from a local directory through the VideoVAE interface."""

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


def load_vae(directory: str | Path) -> VideoVAE:
    """A VAE from ``directory``: a built-in causal VAE export, or a diffusers AutoencoderKL
    (saved with ``save_pretrained``; needs the ``hf`` extra). Nothing is downloaded. The VAE is
    returned in eval mode on the CPU."""
    root = Path(directory)
    config_path = root / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no VAE config here; export a VAE to {root} first")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{config_path}: not valid JSON: {err}") from None
    if config.get("format") == CONFIG_FORMAT:
        vae: VideoVAE = load_causal(root, config)
    elif config.get("_class_name") == "AutoencoderKL":
        vae = DiffusersFrameVAE.from_directory(root)
    else:
        raise ConfigError(
            f"{config_path}: unknown VAE kind; expected format {CONFIG_FORMAT!r} or a diffusers "
            f"AutoencoderKL config (_class_name)"
        )
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
