"""What the specs under jobs/ expect to find in storage, written small: a dataset manifest for
each bucket they train on, VAE and stage exports (config.json and COMPLETE; preflight reads no
weights), and the source videos' manifest. With it, every spec's preflight can run for real."""

from __future__ import annotations

import json
from pathlib import Path

from videomar.artifacts import storage
from videomar.artifacts.layout import COMPLETE_MARKER, CONFIG_FILE
from videomar.artifacts.manifest import BucketManifest, DatasetManifest, write_manifest
from videomar.artifacts.shards import SCHEMA_VERSION
from videomar.model.config import model_config

ROOT = Path(__file__).resolve().parents[2]
VAE_ID = "spec-layout-vae"
CLIPS = 1_000_000  # enough for the largest global batch of any spec
# The quickstart VAE's latents (jobs/quickstart/vae.yaml): channels, temporal and spatial compression.
QUICKSTART_LATENTS = {"channels": 8, "temporal": 1, "spatial": 4}


def latent_shape(bucket: tuple[int, int, int], temporal: int, spatial: int, channels: int = 16) -> tuple:
    frames, height, width = bucket
    return (channels, (frames - 1) // temporal + 1, height // spatial, width // spatial)


def dataset(root: str, buckets: list[tuple[int, int, int]], temporal: int, spatial: int, vae_uri: str,
            channels: int = 16, text: dict | None = None) -> None:
    """manifest.json under ``root`` with the buckets, many train and val clips each, no shards."""
    entries = [BucketManifest(frames=b[0], height=b[1], width=b[2],
                              latent_shape=latent_shape(b, temporal, spatial, channels),
                              counts={"train": CLIPS, "val": CLIPS // 100}) for b in buckets]
    write_manifest(root, DatasetManifest(schema_version=SCHEMA_VERSION, vae_id=VAE_ID, latent_scale=0.5,
                                         vae_uri=vae_uri, buckets=entries, channel_mean=[0.0] * channels,
                                         channel_std=[1.0] * channels, errors=0, videos=1000, text=text or {}))


def vae_export(uri: str, temporal: int = 1, spatial: int = 4, channels: int = 8) -> None:
    """A built-in VAE's config.json (preflight reads the compression from it; no weights)."""
    config = {"format": "videomar-causal-vae", "latent_channels": channels, "temporal_compression": temporal,
              "spatial_compression": spatial, "patch_size": min(spatial, 4)}
    storage.write_bytes_atomic(storage.join(uri, CONFIG_FILE), json.dumps(config).encode())


# The paper's pretrained models, as config.json files (jobs/paper/precompute.yaml).
COSMOS_VAE = {"_class_name": "AutoencoderKLCosmos", "latent_channels": 16, "patch_size": 4,
              "encoder_block_out_channels": [128, 256, 512, 512], "spatial_compression_ratio": 8,
              "temporal_compression_ratio": 8}
PAPER_TEXT = {"encoder_id": "spec-layout-llm", "width": 1536, "max_length": 300}


def stage_export(uri: str, preset: str, bucket: tuple[int, int, int], **overrides) -> None:
    """A complete stage export as preflight sees it: config.json naming the model, then COMPLETE."""
    config = {"format": 1, "model": model_config(preset, **overrides).to_dict(), "preset": preset, "vae_id": VAE_ID,
              "bucket": dict(zip(("frames", "height", "width"), bucket)), "has_vae": False}
    storage.write_bytes_atomic(storage.join(uri, CONFIG_FILE), json.dumps(config).encode())
    storage.write_bytes_atomic(storage.join(uri, COMPLETE_MARKER), b"")


def quickstart(work: str) -> None:
    """jobs/quickstart/*.yaml's relative paths, below ``work``."""
    storage.write_bytes_atomic(storage.join(work, "sample", "manifest.jsonl"), b'{"path": "videos/a.mp4"}\n')
    vae_export(storage.join(work, "vae"))
    dataset(storage.join(work, "latents"), [(5, 32, 32), (9, 32, 32)], vae_uri="../vae", **QUICKSTART_LATENTS)
    for stage, frames in (("quickstart-stage1", 5), ("quickstart-stage2", 9)):
        stage_export(storage.join(work, "runs", stage, "export"), "tiny", (frames, 32, 32), **quickstart_model())


def quickstart_model() -> dict:
    """The model overrides of the quickstart's stages (jobs/quickstart/stage1.yaml)."""
    import yaml

    spec = yaml.safe_load((ROOT / "jobs" / "quickstart" / "stage1.yaml").read_text())
    assert spec["model"]["overrides"]["latent_channels"] == QUICKSTART_LATENTS["channels"]
    return spec["model"]["overrides"]


def paper(bucket_uri: str) -> None:
    """jobs/paper/*.yaml's s3://videomar/... locations, below ``bucket_uri``."""
    storage.write_bytes_atomic(storage.join(bucket_uri, "videos", "manifest.parquet"), b"PAR1")
    vae = storage.join(bucket_uri, "models", "cosmos-1.0-cv8x8x8-vae")
    storage.write_bytes_atomic(storage.join(vae, CONFIG_FILE), json.dumps(COSMOS_VAE).encode())
    llm = storage.join(bucket_uri, "models", "qwen2-1.5b")
    storage.write_bytes_atomic(storage.join(llm, CONFIG_FILE), b'{"model_type": "qwen2", "hidden_size": 1536}')
    text = {**PAPER_TEXT, "path": llm}
    low = [(1, 256, 256), (17, 256, 256), (49, 256, 256)]
    dataset(storage.join(bucket_uri, "latents", "paper-256"), low, temporal=8, spatial=8, vae_uri=vae, text=text)
    dataset(storage.join(bucket_uri, "latents", "paper-512"), [(49, 512, 512)], temporal=8, spatial=8, vae_uri=vae,
            text=text)
    stages = [("paper-stage1-images-256", low[0]), ("paper-stage2-short-256", low[1]),
              ("paper-stage3-long-256", low[2]), ("paper-stage4-long-512", (49, 512, 512))]
    for name, bucket in stages:
        stage_export(storage.join(bucket_uri, "runs", "paper", name, "export"), "large", bucket,
                     text_encoder="precomputed", patch_size=2)
