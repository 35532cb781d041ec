"""The train-vae job on real sample videos with Ray Train (2 DDP workers over gloo): it lowers the
reconstruction error, it exports to a real S3 server and the export restores the trained encoder
exactly, and bad specs or sources fail naming the field or file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from videomar.artifacts import storage
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.errors import ConfigError
from videomar.model.vae import load_vae
from videomar.errors import SpecError
from videomar.platform.jobs import load_spec, parse_spec
from videomar.artifacts.vae_export import write_vae_export
from videomar.platform.training.vae import run_train_vae
from videomar.platform.training.vae_clips import load_clips, model_pixels, reconstruction_psnr

QUICKSTART_SPEC = Path(__file__).resolve().parents[2] / "jobs" / "quickstart" / "vae.yaml"
TINY_VAE = {"latent_channels": 8, "temporal_compression": 4, "spatial_compression": 8,
            "base_channels": 8, "max_channels": 16}


def spec_dict(source: str, output: str, steps: int = 50, **data) -> dict:
    return {
        "kind": "train-vae", "name": "test-vae", "source": source,
        "data": {"frames": 5, "height": 32, "width": 32, "clips_per_video": 2, **data},
        "vae": TINY_VAE,
        "train": {"steps": steps, "batch_size": 4, "lr": 0.003, "log_every": 20, "seed": 1},
        "resources": {"workers": 2},
        "export": output,
    }


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample_videos(out, 4, seed=3, frames=12, size=32)
    return out


@pytest.fixture(scope="module")
def trained(sample, s3_server, ray_local, tmp_path_factory):
    """One real job run (2 DDP workers) with its Ray Train storage and its export on the S3 server:
    its result, the clips it trained on, a local copy of the export read back from S3, and the
    MLflow store it logged to."""
    output = s3_server.uri("vaes", "v1")
    data = spec_dict(str(sample / "manifest.jsonl"), output)
    tracking = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    spec = parse_spec({**data, "mlflow": {"tracking_uri": tracking, "experiment": "vae-test"},
                       "storage": s3_server.uri("train-vae-runs")})
    result = run_train_vae(spec)
    assert storage.list_files(s3_server.uri("train-vae-runs")) == [], "the run's checkpoint folder is removed"
    local = tmp_path_factory.mktemp("export") / "vae"
    storage.copy_tree(output, str(local))
    return result, load_clips(spec).frames, local, tracking


@pytest.mark.timeout(300)
def test_training_lowers_reconstruction_error(trained):
    result, frames, export, _ = trained
    assert result.clips == len(frames) == 8 and result.videos == 4 and not result.skipped
    assert result.psnr_after > result.psnr_before + 3.0, (result.psnr_before, result.psnr_after)
    # The reported figure is the exported model's, measured on the same clips.
    assert reconstruction_psnr(load_vae(export), frames) == pytest.approx(result.psnr_after, abs=1e-3)


def test_export_to_s3_round_trip_gives_the_trained_latents(trained, s3_server):
    result, frames, export, _ = trained
    assert result.export == s3_server.uri("vaes", "v1")
    assert [u.rsplit("/", 1)[-1] for u in storage.list_dir(result.export)] == ["config.json", "model.safetensors"]
    loaded = load_vae(export)
    pixels = model_pixels(frames)
    with torch.no_grad():
        mean, logvar = result.vae.eval().encode(pixels)
        mean2, logvar2 = loaded.encode(pixels)
    assert torch.equal(mean, mean2) and torch.equal(logvar, logvar2)
    assert loaded.vae_id == result.vae_id and loaded.scale == result.scale != 1.0
    # The scale brings the posterior means to unit standard deviation.
    assert (mean * loaded.scale).std().item() == pytest.approx(1.0, rel=1e-3)


def test_psnr_and_spec_are_logged_to_mlflow(trained):
    import mlflow

    result, _, _, tracking = trained
    client = mlflow.MlflowClient(tracking_uri=tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("vae-test").experiment_id])
    assert run.data.metrics["psnr_after"] == pytest.approx(result.psnr_after)
    assert run.data.metrics["psnr_before"] == pytest.approx(result.psnr_before)
    assert run.data.params["train.steps"] == "50" and run.data.params["export"] == result.export
    assert run.data.tags["videomar.vae_id"] == result.vae_id and run.info.status == "FINISHED"


def test_local_export_replaces_an_old_one_whole(trained, tmp_path):
    result, _, _, _ = trained
    target = tmp_path / "out" / "vae"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "stale.txt").write_text("from an older export")
    write_vae_export(result.vae, str(target))
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["vae"], "no staging folders left behind"
    assert load_vae(target).vae_id == result.vae_id


def test_sources_on_s3_are_read(sample, s3_server):
    storage.copy_tree(str(sample), s3_server.uri("sample"))
    remote = load_clips(parse_spec(spec_dict(s3_server.uri("sample", "manifest.jsonl"), "vae")))
    local = load_clips(parse_spec(spec_dict(str(sample / "manifest.jsonl"), "vae")))
    assert np.array_equal(remote.frames, local.frames)
    folder = load_clips(parse_spec(spec_dict(s3_server.uri("sample", "videos"), "vae")))
    assert folder.videos == 4 and len(folder.frames) == 8


@pytest.mark.parametrize("patch,field", [
    ({"data": {"frames": 6}}, "data.frames"),
    ({"data": {"height": 36}}, "data.height"),
    ({"vae": {"temporal_compression": 3}}, "vae.temporal_compression"),
    ({"vae": {"latent_chanels": 4}}, "vae.latent_chanels"),
    ({"vae": {"scale": 0.5}}, "vae.scale"),
    ({"train": {"steps": 0}}, "train.steps"),
    ({"train": {"stepz": 5}}, "train.stepz"),
    ({"resources": {"workers": 0}}, "resources.workers"),
])
def test_bad_spec_values_name_the_field(patch, field):
    data = spec_dict("sample/manifest.jsonl", "vae")
    for section, values in patch.items():
        data[section] = {**data[section], **values}
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert field in str(err.value), str(err.value)


def test_bad_sources_name_the_file(tmp_path, sample):
    missing = parse_spec(spec_dict(str(tmp_path / "nothing.jsonl"), "vae"))
    with pytest.raises(ConfigError, match="source=.*nothing.jsonl"):
        load_clips(missing)
    with pytest.raises(ConfigError, match="has no files"):
        load_clips(parse_spec(spec_dict(str(tmp_path), "vae")))
    # A folder source: an unreadable file is skipped with its reason, the good videos are used.
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((sample / "videos" / "00000.mp4").read_bytes())
    (folder / "b.mp4").write_bytes(b"not a video at all" * 50)
    clips = load_clips(parse_spec(spec_dict(str(folder), "vae")))
    assert clips.videos == 1 and clips.frames.shape == (2, 5, 32, 32, 3)
    assert len(clips.skipped) == 1 and "b.mp4" in clips.skipped[0]
    pixels = model_pixels(clips.frames)
    assert pixels.shape == (2, 3, 5, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1
    only_bad = folder / "bad"
    only_bad.mkdir()
    (only_bad / "c.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="no clip could be read"):
        load_clips(parse_spec(spec_dict(str(only_bad), "vae")))


def test_quickstart_spec_matches_the_quickstart_contract():
    spec = load_spec(QUICKSTART_SPEC)
    config = spec.vae_config()
    assert (spec.data.frames, spec.data.height, spec.data.width) == (9, 32, 32)
    # An 8x8 latent grid at 32x32, and the stages model the VAE's channels.
    assert spec.data.height // config.spatial_compression == 8
    for stage in ("stage1.yaml", "stage2.yaml"):
        model = load_spec(QUICKSTART_SPEC.parent / stage).model
        assert model.build().latent_channels == config.latent_channels
    assert spec.export == "vae" and spec.source == "sample/manifest.jsonl"
    # videomar quickstart --small overrides train.steps.
    assert "steps" in yaml.safe_load(QUICKSTART_SPEC.read_text())["train"]
