"""A tiny, complete stage export for serving and generation tests, written through the training
engineer's public writer (videomar.artifacts.export.write_export)."""

from __future__ import annotations

import tempfile

import torch

from videomar.model.config import model_config
from videomar.model.vae import CausalVideoVAE, VAEConfig
from videomar.model.videomar import build_model
from videomar.artifacts.export import write_export

# A 32x32 image -> a 4x4 latent grid; 4 pixel frames per latent frame.
IMAGE_SIZE = 32
VAE = VAEConfig(latent_channels=4, base_channels=8, max_channels=16, temporal_compression=4,
                spatial_compression=8, patch_size=4, scale=0.5)
MODEL_OVERRIDES = {"latent_channels": 4, "head": {"sample_steps": 4}}


def write_tiny_export(uri: str, seed: int = 0, preset: str = "tiny", overrides: dict | None = None,
                      noisy: bool = False) -> str:
    """Random weights (seeded), a small causal VAE, config.json, COMPLETE: returns ``uri``.
    ``noisy``: every weight random, so samples depend on the backbone (the initialisation
    zeroes the head's output, which makes them ignore it)."""
    torch.manual_seed(seed)
    config = model_config(preset, **(overrides or MODEL_OVERRIDES))
    model = build_model(config)
    if noisy:
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0, 0.1)
    vae = CausalVideoVAE(VAE).eval()
    frames = 1 + 2 * VAE.temporal_compression
    with tempfile.TemporaryDirectory() as vae_dir:
        vae.export(vae_dir)
        write_export(
            uri, model.state_dict(),
            {
                "model": config.to_dict(),
                "preset": preset,
                "latent": {"scale": VAE.scale, "shape": list(vae.latent_shape(frames, IMAGE_SIZE, IMAGE_SIZE))},
                "bucket": {"frames": frames, "height": IMAGE_SIZE, "width": IMAGE_SIZE},
                "vae_id": vae.vae_id,
                "step": 0,
            },
            spec_yaml="kind: train\n",
            vae_uri=vae_dir,
        )
    return uri
