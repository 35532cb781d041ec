"""Tiny randomly initialised pretrained-model folders, built from the transformers and diffusers
config classes and saved with save_pretrained, as a user would place real checkpoints: the four
diffusers video VAE classes, and text encoders (a T5 encoder, a decoder-only LLM)."""

from __future__ import annotations

from pathlib import Path

# Each class's tiny config: (temporal, spatial) compression 2 x 4 with 4 latent channels, except
# CogVideoX (2 x 2: its spatial compression is tied to its block count).
VAE_CONFIGS: dict[str, dict] = {
    "AutoencoderKLWan": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1,
                             temperal_downsample=[False, True], latents_mean=[0.1, -0.2, 0.3, 0.0],
                             latents_std=[1.5, 2.0, 0.5, 1.0]),
    "AutoencoderKLCosmos": dict(latent_channels=4, encoder_block_out_channels=(8,) * 4, decode_block_out_channels=(8,) * 4,
                                attention_resolutions=(), resolution=32, num_layers=1, patch_size=2,
                                spatial_compression_ratio=4, temporal_compression_ratio=4,
                                latents_mean=[0.1] * 8, latents_std=[2.0] * 8),
    "AutoencoderKLCogVideoX": dict(down_block_types=("CogVideoXDownBlock3D",) * 2, up_block_types=("CogVideoXUpBlock3D",) * 2,
                                   block_out_channels=(8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                   temporal_compression_ratio=2, scaling_factor=0.7),
    "AutoencoderKLLTXVideo": dict(latent_channels=4, block_out_channels=(8, 8), down_block_types=("LTXVideoDownBlock3D",) * 2,
                                  decoder_block_out_channels=(8, 8), layers_per_block=(1, 1, 1),
                                  decoder_layers_per_block=(1, 1, 1), spatio_temporal_scaling=(True, False),
                                  decoder_spatio_temporal_scaling=(True, False), decoder_inject_noise=(False,) * 3,
                                  downsample_type=("conv", "conv"), upsample_residual=(False, False),
                                  upsample_factor=(1, 1), patch_size=2, patch_size_t=1),
}


def diffusers_vae(class_name: str, directory: Path, seed: int = 0) -> Path:
    """save_pretrained a tiny random ``class_name`` VAE into ``directory``; returns it."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    model = getattr(diffusers, class_name)(**VAE_CONFIGS[class_name])
    if class_name == "AutoencoderKLLTXVideo":  # its statistics are weights buffers, not config
        model.latents_mean.copy_(torch.tensor([0.2, 0.0, -0.1, 0.3]))
        model.latents_std.copy_(torch.tensor([0.5, 1.0, 2.0, 1.5]))
    model.save_pretrained(str(directory))
    return directory
