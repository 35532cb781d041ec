"""Parquet latent shards: the layout, the content key of a clip, and atomic shard writes.

A shard holds clips of one bucket: the posterior moments as flat float32 lists (reshaped to
[C, T', H', W'] by the reader from the shape in the file's metadata) and the clip metadata. Its
Parquet key-value metadata (``videomar``) records the VAE id, bucket, latent shape, per-split
counts and per-channel sums, so the manifest and the reader need only the footers.

A shard's name is a hash of the content keys it holds, and it is written whole (temporary file +
rename locally, one complete PUT on S3): a reader never sees half a shard, and a re-run that finds
the keys already written skips them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket

SCHEMA_VERSION = 1
SHARD_DIR = "buckets"
META_KEY = b"videomar"
LATENT_COLUMNS = ("mean", "logvar")
METADATA_COLUMNS = ("key", "source", "caption", "clip_index", "start_frame", "stride", "fps", "frames",
                    "height", "width", "split")


def bucket_dir(output: str, bucket: Bucket) -> str:
    return storage.join(output, SHARD_DIR, Bucket.of(bucket).key)


def content_key(identity: str, source: str, bucket: Bucket, start: int, stride: int,
                vae_id: str) -> str:
    """The hash that names one encoded clip: same file, clip parameters and VAE -> same key."""
    text = json.dumps([SCHEMA_VERSION, source, identity, list(bucket), start, stride, vae_id])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def split_of(name: str, val_fraction: float) -> str:
    """``val`` for a deterministic ``val_fraction`` of source videos, by a hash of the video's name
    relative to its source (so moving the source folder keeps the split)."""
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return "val" if digest / 0x1_0000_0000 < val_fraction else "train"


@dataclass(frozen=True)
class ShardInfo:
    uri: str
    vae_id: str
    bucket: Bucket
    latent_shape: tuple[int, int, int, int]
    counts: dict[str, int]
    channel_sum: list[float]
    channel_sumsq: list[float]
    channel_n: int  # values summed per channel

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "vae_id": self.vae_id, "bucket": list(self.bucket),
                "latent_shape": list(self.latent_shape), "counts": self.counts, "channel_sum": self.channel_sum,
                "channel_sumsq": self.channel_sumsq, "channel_n": self.channel_n}


def write_shard(output: str, bucket: Bucket, vae_id: str, rows: dict[str, list],
                mean: np.ndarray, logvar: np.ndarray) -> ShardInfo:
    """Write one shard of ``len(rows['key'])`` clips; mean/logvar are float32 [N, C, T', H', W']."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape = tuple(int(v) for v in mean.shape[1:])
    keys = sorted(rows["key"])
    name = "part-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24] + ".parquet"
    uri = storage.join(bucket_dir(output, bucket), name)
    splits = [str(s) for s in rows["split"]]
    per_channel = mean.astype(np.float64).transpose(1, 0, 2, 3, 4).reshape(shape[0], -1)  # [C, N*T'*H'*W']
    info = ShardInfo(
        uri=uri, vae_id=vae_id, bucket=tuple(bucket), latent_shape=shape,  # type: ignore[arg-type]
        counts={s: splits.count(s) for s in ("train", "val")},
        channel_sum=per_channel.sum(1).tolist(), channel_sumsq=(per_channel ** 2).sum(1).tolist(),
        channel_n=int(per_channel.shape[1]),
    )
    columns = {name: rows[name] for name in METADATA_COLUMNS}
    for name, values in (("mean", mean), ("logvar", logvar)):
        flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(shape)))
    table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(info.to_json()).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(uri, buf.getvalue())
    return info


def shard_uris(output: str, bucket: Bucket) -> list[str]:
    return [u for u in storage.list_dir(bucket_dir(output, bucket)) if u.endswith(".parquet")]


def read_shard_info(uri: str) -> ShardInfo:
    """The ``videomar`` footer metadata of a shard (only the footer is read)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as f:
        meta = pq.read_metadata(f).metadata or {}
    if META_KEY not in meta:
        raise ValueError(f"{uri}: not a videomar latent shard (no '{META_KEY.decode()}' metadata)")
    data = json.loads(meta[META_KEY])
    return ShardInfo(
        uri=uri, vae_id=str(data["vae_id"]), bucket=tuple(data["bucket"]),  # type: ignore[arg-type]
        latent_shape=tuple(data["latent_shape"]), counts=dict(data["counts"]),  # type: ignore[arg-type]
        channel_sum=list(data["channel_sum"]), channel_sumsq=list(data["channel_sumsq"]),
        channel_n=int(data["channel_n"]),
    )


def read_keys(uris: list[str]) -> set[str]:
    """The content keys held by the given shards (only the ``key`` column is read)."""
    import pyarrow.parquet as pq

    keys: set[str] = set()
    for uri in uris:
        fs, path = storage.filesystem(uri)
        with fs.open_input_file(path) as f:
            keys.update(pq.read_table(f, columns=["key"]).column("key").to_pylist())
    return keys
