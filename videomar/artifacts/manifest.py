"""The dataset manifest: ``<output>/manifest.json``, written atomically and last by a precompute
run. It describes the dataset as a whole (VAE, buckets and their latent shapes, counts, per-channel
latent statistics, error count) and lists each bucket's shards, so readers see exactly the shards
of a finished run."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket
from videomar.artifacts.shards import SCHEMA_VERSION, ShardInfo

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class BucketManifest:
    frames: int
    height: int
    width: int
    latent_shape: tuple[int, int, int, int]  # (C, T', H', W')
    counts: dict[str, int]  # {"train": n, "val": n}
    shards: list[str] = field(default_factory=list)  # paths relative to the manifest's folder

    @property
    def shape(self) -> Bucket:
        """The bucket's pixel shape (latent_shape is its latents')."""
        return Bucket.of(self)

    @property
    def clips(self) -> int:
        return int(sum(self.counts.values()))


@dataclass(frozen=True)
class DatasetManifest:
    schema_version: int
    vae_id: str
    latent_scale: float
    vae_uri: str | None  # absolute, s3://, or relative to the manifest's folder
    buckets: list[BucketManifest]
    channel_mean: list[float]
    channel_std: list[float]
    errors: int
    videos: int = 0  # source videos listed by the run that wrote the manifest
    # The VAE the latents came from (VideoVAE.summary()): its class, temporal and spatial
    # compression, latent channels, scale and, for pretrained video VAEs, the latents_mean/std
    # its encoder normalised with. Empty in manifests written before it was recorded.
    vae: dict = field(default_factory=dict)
    # The caption embeddings in <dataset>/text/ (artifacts/text_shards): the text encoder's id,
    # local path, width and max_length, and the distinct captions. Empty without a text encoder.
    text: dict = field(default_factory=dict)

    def bucket(self, shape: Bucket) -> BucketManifest | None:
        frames, height, width = (int(v) for v in shape)
        for b in self.buckets:
            if b.shape == (frames, height, width):
                return b
        return None

    def to_json(self) -> dict:
        return asdict(self)


def manifest_uri(output: str) -> str:
    return storage.join(output, MANIFEST_FILE)


def load_manifest(uri: str) -> DatasetManifest:
    """Read ``manifest.json`` (a file URI, or a dataset folder holding one)."""
    uri = str(uri)
    if not uri.endswith(".json"):
        uri = manifest_uri(uri)
    try:
        data = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as err:
        raise ValueError(f"{uri}: not valid JSON: {err}") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{uri}: schema_version {data.get('schema_version')!r}; this videomar reads {SCHEMA_VERSION}")
    check_fields(uri, "", data, DatasetManifest)
    buckets = []
    for i, b in enumerate(data.pop("buckets")):
        check_fields(uri, f"buckets[{i}].", b, BucketManifest)
        buckets.append(BucketManifest(**{**b, "latent_shape": tuple(b["latent_shape"])}))
    return DatasetManifest(buckets=buckets, **data)


def check_fields(uri: str, where: str, data: dict, kind: type) -> None:
    """ValueError naming the fields of ``data`` that ``kind`` does not have, or lacks: a manifest
    written by another videomar version, or edited by hand."""
    from dataclasses import MISSING, fields

    known = {f.name for f in fields(kind)}
    required = {f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(data) - known), sorted(required - set(data))
    if unknown or missing:
        problems = ([f"unknown field(s) {', '.join(where + k for k in unknown)}"] if unknown else []) + (
            [f"missing field(s) {', '.join(where + k for k in missing)}"] if missing else [])
        raise ValueError(f"{uri}: {'; '.join(problems)} for schema_version {SCHEMA_VERSION}; was it written by "
                         f"another videomar version? Re-run the precompute job into a new output folder")


def bucket_manifest(bucket: Bucket, latent_shape: tuple, shards: list[ShardInfo],
                    output: str) -> BucketManifest:
    counts = {"train": 0, "val": 0}
    for s in shards:
        for split, n in s.counts.items():
            counts[split] = counts.get(split, 0) + int(n)
    prefix = output.rstrip("/") + "/"
    rel = [s.uri[len(prefix):] if s.uri.startswith(prefix) else s.uri for s in shards]
    if not storage.is_s3(output):
        rel = [r.replace("\\", "/") for r in rel]
    frames, height, width = bucket
    return BucketManifest(frames=frames, height=height, width=width,
                          latent_shape=tuple(int(v) for v in latent_shape),  # type: ignore[arg-type]
                          counts=counts, shards=sorted(rel))


def channel_stats(shards: list[ShardInfo], channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over every shard (zeros/ones if none)."""
    total = [0.0] * channels
    total_sq = [0.0] * channels
    n = 0
    for s in shards:
        n += s.channel_n
        for c in range(channels):
            total[c] += s.channel_sum[c]
            total_sq[c] += s.channel_sumsq[c]
    if n == 0:
        return [0.0] * channels, [1.0] * channels
    mean = [t / n for t in total]
    std = [math.sqrt(max(q / n - m * m, 0.0)) for q, m in zip(total_sq, mean)]
    return mean, std


def write_manifest(output: str, manifest: DatasetManifest) -> str:
    """Write ``<output>/manifest.json`` atomically; returns its URI."""
    uri = manifest_uri(output)
    storage.write_bytes_atomic(uri, (json.dumps(manifest.to_json(), indent=2) + "\n").encode())
    return uri
