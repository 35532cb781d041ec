"""A small real latent dataset for tests: sample videos of moving digits, encoded by the
precompute job (jobs/quickstart/precompute.yaml: Ray Data decode -> VAE actor pool -> Parquet
shards + manifest) with a small VAE of fixed shape (16 latent channels, temporal compression 4,
spatial 8), in the quickstart stages' buckets 5x32x32 and 9x32x32.

The VAE is exported untrained: training it is the train-vae job's test, and these tests need
real shards of the quickstart's shapes, not good latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = 6  # by the split hash of their names: 4 train and 2 val videos at val_fraction 0.2
FRAMES = 24  # per video: 4 clips of 5 frames and 2 clips of 9 frames
SIZE = 64  # the quickstart sample size: clips are resized to 32x32


@dataclass(frozen=True)
class Latents:
    manifest: str  # URI of manifest.json
    vae: str  # the VAE export the shards were encoded with
    videos: str  # the sample videos' manifest.jsonl
    output: str  # the dataset folder (local or s3://)


# The tests' VAE: fixed here, not read from jobs/quickstart/vae.yaml, because the tests' latent
# shapes depend on it. Stage specs trained on its latents set model.overrides.latent_channels to it.
LATENT_CHANNELS = 16


def quickstart_vae(directory: Path, seed: int = 0) -> str:
    """Export an untrained small VAE (16 channels, temporal 4, spatial 8) to ``directory``."""
    import torch

    from videomar.model.vae import CausalVideoVAE, VAEConfig

    fields = {"latent_channels": LATENT_CHANNELS, "temporal_compression": 4, "spatial_compression": 8,
              "patch_size": 4, "base_channels": 16, "max_channels": 32}
    torch.manual_seed(seed)
    CausalVideoVAE(VAEConfig(**fields)).export(str(directory))
    return str(directory)


def precompute_spec(sources: str, vae: str, output: str, **changes):
    """The quickstart precompute spec with test paths (and any other field changed)."""
    from videomar.platform.jobs import parse_spec

    data = yaml.safe_load((ROOT / "jobs/quickstart/precompute.yaml").read_text())
    data.update(source=sources, vae=vae, output=output, **changes)
    return parse_spec(data, "jobs/quickstart/precompute.yaml (test paths)")


def build_latents(root: Path | str, output: str | None = None, videos: int = VIDEOS) -> Latents:
    """Run the quickstart precompute spec on sample videos under ``root`` into ``output``
    (default ``root/latents``; may be s3://), on the tests' local Ray."""
    from tests.support.ray_local import local_ray
    from videomar.artifacts.manifest import manifest_uri
    from videomar.data_pipelines.sample_data import write_sample_videos
    from videomar.platform.jobs import execute

    local_ray()
    root = Path(root)
    sources = write_sample_videos(root / "sample", videos, seed=0, frames=FRAMES, size=SIZE)
    vae = quickstart_vae(root / "vae")
    output = output or str(root / "latents")
    status = execute(precompute_spec(str(sources), vae, output))
    if status != 0:
        raise RuntimeError(f"precompute exited with status {status}")
    return Latents(manifest=manifest_uri(output), vae=vae, videos=str(sources), output=output)


def synthetic_latents(output: str, clips: int, latent_shape: tuple[int, int, int, int] = (16, 3, 8, 8),
                      bucket: tuple[int, int, int] = (9, 32, 32), shard_clips: int = 256, seed: int = 0,
                      latent_scale: float = 0.5) -> str:
    """Random posterior moments written as real shards of one bucket (``shard_clips`` clips each, the
    precompute default; a clip's mean is filled with its index plus noise, so tests can tell clips
    apart) and a real manifest; every clip is in the train split. Returns the manifest's URI."""
    import numpy as np

    from videomar.artifacts.manifest import DatasetManifest, bucket_manifest, channel_stats, write_manifest
    from videomar.artifacts.shards import SCHEMA_VERSION, write_shard

    rng = np.random.default_rng(seed)
    vae_id = "synthetic"
    infos = []
    for first in range(0, clips, shard_clips):
        ids = range(first, min(first + shard_clips, clips))
        n = len(ids)
        mean = (np.arange(first, first + n, dtype=np.float32).reshape(n, 1, 1, 1, 1)
                + rng.standard_normal((n, *latent_shape), dtype=np.float32) * 0.01)
        rows = {"key": [f"clip-{i:08d}" for i in ids], "source": [f"video-{i}.mp4" for i in ids],
                "caption": [f"clip {i}" for i in ids], "clip_index": [0] * n, "start_frame": [0] * n,
                "stride": [1] * n, "fps": [8.0] * n, "frames": [bucket[0]] * n, "height": [bucket[1]] * n,
                "width": [bucket[2]] * n, "split": ["train"] * n}
        infos.append(write_shard(output, bucket, vae_id, rows, mean, np.full_like(mean, -4.0)))
    channel_mean, channel_std = channel_stats(infos, latent_shape[0])
    return write_manifest(output, DatasetManifest(
        schema_version=SCHEMA_VERSION, vae_id=vae_id, latent_scale=latent_scale, vae_uri=None,
        buckets=[bucket_manifest(bucket, latent_shape, infos, output)], channel_mean=channel_mean,
        channel_std=channel_std, errors=0, videos=clips))
