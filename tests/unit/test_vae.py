"""The built-in causal video VAE: shapes, causality, export round trip, and that training lowers
reconstruction error."""

from __future__ import annotations

import json

import pytest
import torch

from videomar.errors import ConfigError
from videomar.model.vae import CausalVideoVAE, VAEConfig, load_vae

SMALL = VAEConfig(latent_channels=8, base_channels=8, max_channels=16)


@pytest.mark.parametrize("t,s,p", [(1, 8, 4), (4, 8, 4), (8, 16, 4), (4, 16, 16)])
def test_shapes_follow_compression(t, s, p):
    vae = CausalVideoVAE(VAEConfig(latent_channels=4, base_channels=8, max_channels=16,
                                   temporal_compression=t, spatial_compression=s, patch_size=p))
    frames = 2 * t + 1
    pixels = torch.rand(1, 3, frames, 32, 32) * 2 - 1
    mean, logvar = vae.encode(pixels)
    expected = (1, *vae.latent_shape(frames, 32, 32))
    assert mean.shape == logvar.shape == expected
    assert expected[2] == (frames - 1) // t + 1 and expected[3] == 32 // s
    assert vae.decode(mean).shape == pixels.shape
    assert vae.decode(mean).abs().max() <= 1.0


def test_frame_zero_is_encoded_alone_and_nothing_looks_ahead():
    torch.manual_seed(0)
    vae = CausalVideoVAE(SMALL).eval()
    pixels = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    changed = pixels.clone()
    changed[:, :, 5:] = torch.rand_like(changed[:, :, 5:])
    with torch.no_grad():
        mean, _ = vae.encode(pixels)
        alone, _ = vae.encode(pixels[:, :, :1])
        mean_changed, _ = vae.encode(changed)
    torch.testing.assert_close(alone[:, :, 0], mean[:, :, 0])
    # Latent frame 1 sees pixel frames 0..4 only (t=4).
    torch.testing.assert_close(mean_changed[:, :, :2], mean[:, :, :2])
    assert not torch.allclose(mean_changed[:, :, 2], mean[:, :, 2])


def test_export_round_trip_gives_same_latents_and_id(tmp_path):
    vae = CausalVideoVAE(SMALL).with_scale(0.7).eval()
    vae.export(str(tmp_path / "vae"))
    loaded = load_vae(tmp_path / "vae")
    pixels = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae.encode(pixels)[0], loaded.encode(pixels)[0])
    assert loaded.vae_id == vae.vae_id and loaded.scale == 0.7
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["config.json", "model.safetensors"]
    other = CausalVideoVAE(SMALL)
    assert other.vae_id != vae.vae_id


def test_bad_configs_and_inputs_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="vae.temporal_compression"):
        VAEConfig(temporal_compression=3).validate()
    with pytest.raises(ConfigError, match="vae.patch_size"):
        VAEConfig(patch_size=32, spatial_compression=16).validate()
    with pytest.raises(ValueError, match="height=30"):
        CausalVideoVAE(SMALL).encode(torch.zeros(1, 3, 1, 30, 32))
    (tmp_path / "config.json").write_text(json.dumps({"format": "videomar-causal-vae", "latent_chans": 4}))
    with pytest.raises(ConfigError, match="latent_chans"):
        load_vae(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(tmp_path / "missing")


@pytest.mark.timeout(120)
def test_training_lowers_reconstruction_error():
    torch.manual_seed(0)
    vae = CausalVideoVAE(SMALL)
    # Smooth moving blobs: learnable structure, not noise.
    grid = torch.linspace(-1, 1, 32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    frames = [torch.exp(-((xx - 0.1 * t + 0.3) ** 2 + (yy - 0.05 * t) ** 2) * 8) for t in range(5)]
    clip = torch.stack(frames)[None, None].expand(4, 3, 5, 32, 32) * 2 - 1  # [4, 3, 5, 32, 32]
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        loss, parts = vae.reconstruction_loss(clip)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = parts["mse"].item() if first is None else first
    assert parts["mse"].item() < 0.5 * first


@pytest.mark.timeout(120)
def test_diffusers_autoencoder_loads_from_a_local_directory(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = diffusers.AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, scaling_factor=0.3,
    )
    model.save_pretrained(str(tmp_path / "hf"))
    vae = load_vae(tmp_path / "hf")
    assert (vae.temporal_compression, vae.spatial_compression, vae.latent_channels, vae.scale) == (1, 2, 4, 0.3)
    pixels = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, logvar = vae.encode(pixels)
        assert mean.shape == logvar.shape == (2, *vae.latent_shape(3, 16, 16))
        # Frame by frame: frame 1 of the video is the image VAE's encoding of that frame.
        alone = model.encode(pixels[:, :, 1]).latent_dist.mean
        torch.testing.assert_close(mean[:, :, 1], alone)
        assert vae.decode(mean).shape == pixels.shape
        vae.export(str(tmp_path / "again"))
        again = load_vae(tmp_path / "again")
        assert again.vae_id == vae.vae_id
        torch.testing.assert_close(again.encode(pixels)[0], mean)
