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


# Every word of the sample videos' captions ("a handwritten 3 moving up and left"), so the tiny
# tokenizers cover them.
WORDS = ["a", "handwritten", "moving", "up", "down", "left", "right", "and", "digit", *map(str, range(10))]
TEXT_WIDTH = 32


def text_encoder(kind: str, directory: Path, seed: int = 0) -> Path:
    """save_pretrained a tiny random text model and a word-level tokenizer into ``directory``:
    ``t5`` (a T5 encoder) or ``llm`` (a decoder-only Qwen2, whose last hidden state is used)."""
    import torch
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(seed)
    if kind == "t5":
        config = transformers.T5Config(vocab_size=len(vocab), d_model=TEXT_WIDTH, d_kv=8, d_ff=64, num_layers=1,
                                       num_heads=2, pad_token_id=0)
        model = transformers.T5EncoderModel(config)
    else:
        config = transformers.Qwen2Config(vocab_size=len(vocab), hidden_size=TEXT_WIDTH, intermediate_size=64,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                          pad_token_id=0)
        model = transformers.Qwen2ForCausalLM(config)
    model.save_pretrained(directory)
    return directory
