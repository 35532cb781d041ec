"""A pretrained diffusers video VAE by local path, end to end: a tiny random AutoencoderKLWan saved
with save_pretrained -> the precompute job (its compression, channels and normalisation in the
manifest) -> a short training stage (Ray Train + DeepSpeed on the local Ray) -> ``videomar
generate`` decoding through the same VAE from the stage export."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.support.latents import precompute_spec
from tests.support.pretrained import diffusers_vae
from tests.support.videos import decode_mp4, png_b64
from videomar.artifacts.manifest import load_manifest, manifest_uri
from videomar.errors import SpecError
from videomar.platform.cli import main as cli
from videomar.platform.jobs import execute, parse_spec

ROOT = Path(__file__).resolve().parents[2]
BUCKET = {"frames": 5, "height": 32, "width": 32}  # Wan tiny: t=2, s=4 -> latents (4, 3, 8, 8)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def stage_spec(manifest: str, work: Path):
    data = yaml.safe_load((ROOT / "jobs/quickstart/stage1.yaml").read_text())
    data.update(name="wan-stage", storage=str(work / "runs"))
    data["model"]["overrides"]["latent_channels"] = 4
    data["data"].update(manifest=manifest, bucket=BUCKET)
    data["schedule"].update(steps=2, warmup_steps=1)
    data["checkpoint"].update(every=2, keep=1)
    data["optim"]["batch_size"] = 2
    data["resources"]["workers"] = 1
    data["mlflow"]["tracking_uri"] = f"sqlite:///{work / 'mlflow.db'}"
    data["samples"]["count"] = 0
    data.pop("eval", None)
    return data


def test_wan_vae_precompute_train_generate(tmp_path, ray_local):
    from videomar.data_pipelines.sample_data import write_sample_videos

    vae = diffusers_vae("AutoencoderKLWan", tmp_path / "wan")
    sources = write_sample_videos(tmp_path / "sample", 4, seed=0, frames=8, size=32)
    output = str(tmp_path / "latents")
    bad = precompute_spec(str(sources), str(vae), output, buckets=[{"frames": 4, "height": 32, "width": 32}])
    with pytest.raises(SpecError, match=r"buckets\[0\].*AutoencoderKLWan.*1 \+ a multiple of 2"):
        execute(bad)
    assert execute(precompute_spec(str(sources), str(vae), output, buckets=[BUCKET], val_fraction=0.0)) == 0
    manifest = load_manifest(manifest_uri(output))
    assert manifest.buckets[0].latent_shape == (4, 3, 8, 8)
    assert manifest.vae["class_name"] == "AutoencoderKLWan"
    assert (manifest.vae["temporal_compression"], manifest.vae["spatial_compression"]) == (2, 4)
    assert manifest.vae["latents_std"] == [[1.5], [2.0], [0.5], [1.0]]

    data = stage_spec(manifest_uri(output), tmp_path)
    wrong = copy.deepcopy(data)
    wrong["model"]["overrides"]["latent_channels"] = 16
    with pytest.raises(SpecError, match="latent_channels=16.*4 latent channels.*AutoencoderKLWan"):
        execute(parse_spec(wrong, "<wrong channels>"))
    wrong = copy.deepcopy(data)
    wrong["model"]["overrides"]["patch_size"] = 3
    with pytest.raises(SpecError, match="patch_size=3"):
        execute(parse_spec(wrong, "<wrong patch>"))
    assert execute(parse_spec(data, "<wan stage>")) == 0
    export = tmp_path / "runs" / "wan-stage" / "export"
    assert json.loads((export / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKLWan"

    image = tmp_path / "cond.png"
    image.write_bytes(base64.b64decode(png_b64(32, 32)))
    out = tmp_path / "out.mp4"
    assert cli(["generate", "--export", str(export), "--image", str(image), "--frames", "5", "--out", str(out),
                "--steps", "2", "--prompt", "a digit"]) == 0
    assert decode_mp4(out.read_bytes()).shape == (5, 32, 32, 3)
