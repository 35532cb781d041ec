"""Pretrained diffusers video VAEs from local folders: each of the four classes is recognised by
its config.json, has the compression and channels its config implies, normalises its latents with
its own statistics, decodes back to pixels, and exports to a folder that loads to the same VAE."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support.pretrained import VAE_CONFIGS, diffusers_vae
from videomar.errors import ConfigError
from videomar.model.vae import load_vae, read_config, vae_geometry

pytest.importorskip("diffusers")

EXPECTED = {  # (temporal, spatial, channels) of the tiny configs
    "AutoencoderKLWan": (2, 4, 4),
    "AutoencoderKLCosmos": (4, 4, 4),
    "AutoencoderKLCogVideoX": (2, 2, 4),
    "AutoencoderKLLTXVideo": (2, 4, 4),
}


@pytest.mark.parametrize("name", sorted(VAE_CONFIGS))
def test_video_vae_round_trip_through_our_loader(tmp_path, name):
    folder = diffusers_vae(name, tmp_path / "vae")
    assert vae_geometry(read_config(folder)) == EXPECTED[name]  # from config.json alone
    vae = load_vae(folder)
    t, s, c = EXPECTED[name]
    assert (vae.temporal_compression, vae.spatial_compression, vae.latent_channels) == (t, s, c)
    frames = 2 * t + 1
    pixels = torch.rand(2, 3, frames, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, logvar = vae.encode(pixels)
        assert mean.shape == logvar.shape == (2, c, 3, 16 // s, 16 // s)
        # The latents are the class's own latents, normalised by its statistics.
        dist = vae.model.encode(pixels).latent_dist
        raw = dist.mean if hasattr(dist, "mean") else dist.mode()
        m, sd = vae.stats_for(3, raw)
        torch.testing.assert_close(mean, (raw - m) / sd)
        assert vae.decode(mean).shape == pixels.shape
        torch.testing.assert_close(vae.decode(mean), vae.model.decode(raw).sample.clamp(-1, 1), atol=1e-5, rtol=1e-4)
        summary = vae.summary()
        assert summary["class_name"] == name and summary["temporal_compression"] == t
        assert len(summary["latents_mean"]) == c
        vae.export(str(tmp_path / "again"))
        again = load_vae(tmp_path / "again")
        assert again.vae_id == vae.vae_id
        torch.testing.assert_close(again.encode(pixels)[0], mean)
    with pytest.raises(ValueError, match=f"frames={t + 2}.*temporal compression {t}"):
        vae.encode(torch.zeros(1, 3, t + 2, 16, 16))


def test_statistics_per_latent_frame_and_unknown_classes(tmp_path):
    vae = load_vae(diffusers_vae("AutoencoderKLCosmos", tmp_path / "cosmos"))
    assert tuple(vae.latents_mean.shape) == (4, 2)  # 8 values: 4 channels x 2 latent frames
    m, _ = vae.stats_for(3, torch.zeros(1))
    assert m.shape == (1, 4, 3, 1, 1)  # frames past the statistics reuse the last frame's
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLMochi"}))
    with pytest.raises(ConfigError, match="AutoencoderKLMochi.*AutoencoderKLWan"):
        load_vae(tmp_path / "other")
