"""Real conditioning by local path, end to end: a tiny random AutoencoderKLWan and a tiny decoder-only
LLM (Qwen2), each saved with save_pretrained -> the precompute job (the VAE's compression, channels
and normalisation, and the caption embeddings, in the manifest; a re-run encodes nothing twice) ->
a short training stage on precomputed text (Ray Train + DeepSpeed on the local Ray) -> ``videomar
generate`` embedding its prompt with the same LLM and decoding through the same VAE. The other
three diffusers video VAE classes take the same path with a T5 encoder."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.latents import precompute_spec
from tests.support.pretrained import TEXT_WIDTH, diffusers_vae, text_encoder
from tests.support.videos import decode_mp4, png_b64
from videomar.artifacts.manifest import load_manifest, manifest_uri
from videomar.errors import SpecError
from videomar.platform.cli import main as cli
from videomar.platform.evaluation.workers import LossWorker
from videomar.platform.jobs import execute, parse_spec
from videomar.platform.specs.eval import EvalOptions

ROOT = Path(__file__).resolve().parents[2]
BUCKET = {"frames": 5, "height": 32, "width": 32}  # Wan tiny: t=2, s=4 -> latents (4, 3, 8, 8)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def stage_spec(manifest: str, work: Path, bucket: dict = BUCKET, name: str = "wan-stage"):
    data = yaml.safe_load((ROOT / "jobs/quickstart/stage1.yaml").read_text())
    data.update(name=name, storage=str(work / "runs"))
    data["model"]["overrides"].update(latent_channels=4, text_encoder="precomputed", text_dim=TEXT_WIDTH,
                                      text_max_len=16)
    data["data"].update(manifest=manifest, bucket=bucket)
    data["schedule"].update(steps=2, warmup_steps=1)
    data["checkpoint"].update(every=2, keep=1)
    data["optim"]["batch_size"] = 2
    data["resources"]["workers"] = 1
    data["mlflow"]["tracking_uri"] = f"sqlite:///{work / 'mlflow.db'}"
    data["samples"]["count"] = 0
    data.pop("eval", None)
    return data


def test_wan_vae_and_llm_text_precompute_train_generate(tmp_path, ray_local, capsys):
    from videomar.data_pipelines.sample_data import write_sample_videos

    vae = diffusers_vae("AutoencoderKLWan", tmp_path / "wan")
    llm = text_encoder("llm", tmp_path / "llm")
    sources = write_sample_videos(tmp_path / "sample", 4, seed=0, frames=8, size=32)
    output = str(tmp_path / "latents")
    bad = precompute_spec(str(sources), str(vae), output, buckets=[{"frames": 4, "height": 32, "width": 32}])
    with pytest.raises(SpecError, match=r"buckets\[0\].*AutoencoderKLWan.*1 \+ a multiple of 2"):
        execute(bad)
    latents_only = precompute_spec(str(sources), str(vae), output, buckets=[BUCKET], val_fraction=0.0)
    assert execute(latents_only) == 0
    manifest = load_manifest(manifest_uri(output))
    assert manifest.buckets[0].latent_shape == (4, 3, 8, 8)
    assert manifest.vae["class_name"] == "AutoencoderKLWan"
    assert (manifest.vae["temporal_compression"], manifest.vae["spatial_compression"]) == (2, 4)
    assert manifest.vae["latents_std"] == [[1.5], [2.0], [0.5], [1.0]]
    assert manifest.text == {}

    data = stage_spec(manifest_uri(output), tmp_path)
    with pytest.raises(SpecError, match="text_encoder='precomputed'.*no caption embeddings"):
        execute(parse_spec(data, "<no embeddings>"))
    # The same output again, now with the LLM: the clips are all there, only captions are encoded.
    with_text = dict(latents_only.model_dump(mode="json"), text_encoder={"path": str(llm), "max_length": 16})
    capsys.readouterr()
    assert execute(parse_spec(with_text, "<with text>")) == 0
    printed = capsys.readouterr().out
    manifest = load_manifest(manifest_uri(output))
    assert (manifest.text["path"], manifest.text["width"], manifest.text["max_length"]) == (str(llm), TEXT_WIDTH, 16)
    captions = manifest.text["captions"]
    assert "4 already present" in printed and f"{captions} distinct captions, {captions} encoded by this run" in printed
    assert execute(parse_spec(with_text, "<with text again>")) == 0
    assert f"{captions} distinct captions, 0 encoded by this run" in capsys.readouterr().out

    for field, value, message in [("latent_channels", 16, "latent_channels=16.*4 latent channels.*AutoencoderKLWan"),
                                  ("patch_size", 3, "patch_size=3"), ("text_dim", 48, "text_dim=48.*width 32")]:
        wrong = copy.deepcopy(data)
        wrong["model"]["overrides"][field] = value
        with pytest.raises(SpecError, match=message):
            execute(parse_spec(wrong, f"<wrong {field}>"))
    assert execute(parse_spec(data, "<wan stage>")) == 0
    export = tmp_path / "runs" / "wan-stage" / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["text_encoder"]["path"] == str(llm)
    assert json.loads((export / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKLWan"

    # Evaluation reads the captions' embeddings from the dataset the stage trained on.
    shard = pq.read_table(f"{output}/{manifest.buckets[0].shards[0]}").to_pydict()
    batch = {"mean": np.array(shard["mean"], np.float32).reshape(-1, 4, 3, 8, 8), "caption": np.array(shard["caption"]),
             "source": np.array(shard["source"]), "clip_index": np.array(shard["clip_index"])}
    assert np.isfinite(LossWorker(str(export), EvalOptions().model_dump())(batch)["loss"]).all()

    image = tmp_path / "cond.png"
    image.write_bytes(base64.b64decode(png_b64(32, 32)))
    out = tmp_path / "out.mp4"
    assert cli(["generate", "--export", str(export), "--image", str(image), "--frames", "5", "--out", str(out),
                "--steps", "2", "--prompt", "a handwritten 3 moving up"]) == 0
    assert decode_mp4(out.read_bytes()).shape == (5, 32, 32, 3)


# (temporal, spatial) compression of each tiny config (tests/support/pretrained.py), on 32x32 clips
# (decord cannot read back smaller videos).
OTHER_VAES = {"AutoencoderKLCosmos": (4, 4), "AutoencoderKLCogVideoX": (2, 2), "AutoencoderKLLTXVideo": (2, 4)}


@pytest.mark.parametrize("class_name", sorted(OTHER_VAES))
def test_each_other_video_vae_with_t5_text_precompute_train_generate(tmp_path, ray_local, class_name):
    from videomar.data_pipelines.sample_data import write_sample_videos

    t, s = OTHER_VAES[class_name]
    bucket = {"frames": 2 * t + 1, "height": 32, "width": 32}
    vae = diffusers_vae(class_name, tmp_path / "vae")
    t5 = text_encoder("t5", tmp_path / "t5")
    sources = write_sample_videos(tmp_path / "sample", 2, seed=0, frames=2 * t + 1, size=32)
    output = str(tmp_path / "latents")
    spec = precompute_spec(str(sources), str(vae), output, buckets=[bucket], val_fraction=0.0,
                           text_encoder={"path": str(t5), "max_length": 16})
    assert execute(spec) == 0
    manifest = load_manifest(manifest_uri(output))
    assert manifest.buckets[0].latent_shape == (4, 3, 32 // s, 32 // s)
    assert (manifest.vae["class_name"], manifest.vae["temporal_compression"]) == (class_name, t)
    assert manifest.text["path"] == str(t5)

    assert execute(parse_spec(stage_spec(manifest_uri(output), tmp_path, bucket, "vae-stage"), "<stage>")) == 0
    export = tmp_path / "runs" / "vae-stage" / "export"
    assert json.loads((export / "vae" / "config.json").read_text())["_class_name"] == class_name
    image = tmp_path / "cond.png"
    image.write_bytes(base64.b64decode(png_b64(32, 32)))
    out = tmp_path / "out.mp4"
    assert cli(["generate", "--export", str(export), "--image", str(image), "--frames", str(2 * t + 1),
                "--out", str(out), "--steps", "2", "--prompt", "a handwritten 3 moving up"]) == 0
    assert decode_mp4(out.read_bytes()).shape == (2 * t + 1, 32, 32, 3)
