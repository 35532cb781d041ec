"""The training side of a latent dataset: one bucket of a manifest as a Ray Dataset.

Rows carry ``mean`` and ``logvar`` as float32 [C, T', H', W'] tensor columns plus the clip metadata
(``caption``, ``source``, ``clip_index``, ``start_frame``, ``stride``, ``split``, ...). Shards are
checked against the manifest before any row is read: a shard from another VAE or of another shape
is refused, naming what differs.
"""

from __future__ import annotations

import numpy as np

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket
from videomar.artifacts.manifest import BucketManifest, DatasetManifest, load_manifest
from videomar.artifacts.shards import LATENT_COLUMNS, read_shard_info

SPLITS = ("train", "val", "all")


def read_bucket(manifest_uri: str, bucket: Bucket, split: str = "train"):
    """The clips of ``bucket`` (frames, height, width) in ``split`` as a ray.data.Dataset."""
    import ray.data

    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    manifest = load_manifest(manifest_uri)
    entry = find_bucket(manifest, bucket, manifest_uri)
    uris = shard_locations(manifest_uri, entry)
    check_shards(uris, manifest, entry)
    if not uris:
        raise ValueError(f"{manifest_uri}: bucket {entry.shape.key} has no shards")
    fs, _ = storage.filesystem(uris[0])
    paths = [storage.filesystem(u)[1] for u in uris]
    ds = ray.data.read_parquet(paths, filesystem=fs)
    return ds.map_batches(unflatten, batch_format="pyarrow", fn_kwargs={"shape": tuple(entry.latent_shape),
                                                                         "split": split})


def find_bucket(manifest: DatasetManifest, bucket: Bucket, manifest_uri: str) -> BucketManifest:
    entry = manifest.bucket(tuple(int(v) for v in bucket))  # type: ignore[arg-type]
    if entry is None:
        have = ", ".join(b.shape.key for b in manifest.buckets) or "none"
        frames, height, width = bucket
        raise ValueError(f"{manifest_uri}: no bucket {frames}x{height}x{width} (frames x height x width); "
                         f"its buckets are: {have}")
    return entry


def shard_locations(manifest_uri: str, entry: BucketManifest) -> list[str]:
    base = storage.folder_of(manifest_uri)
    return [storage.resolve(s, base) for s in entry.shards]


def check_shards(uris: list[str], manifest: DatasetManifest, entry: BucketManifest) -> None:
    """Refuse shards whose VAE, bucket or latent shape differ from the manifest's, naming them."""
    want_bucket = (entry.frames, entry.height, entry.width)
    for uri in uris:
        info = read_shard_info(uri)
        problems = []
        if info.vae_id != manifest.vae_id:
            problems.append(f"VAE id {info.vae_id} (manifest: {manifest.vae_id})")
        if tuple(info.bucket) != want_bucket:
            problems.append(f"bucket {'x'.join(map(str, info.bucket))} (stage: {entry.shape.key})")
        if tuple(info.latent_shape) != tuple(entry.latent_shape):
            problems.append(f"latent shape {list(info.latent_shape)} (manifest: {list(entry.latent_shape)})")
        if problems:
            raise ValueError(f"{uri}: shard does not match the dataset: " + "; ".join(problems))


def unflatten(table, shape: tuple[int, ...], split: str) -> dict[str, np.ndarray]:
    """Arrow rows -> numpy columns with mean/logvar reshaped to [N, C, T', H', W'], rows of ``split``."""
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
               if name not in LATENT_COLUMNS}
    keep = np.ones(table.num_rows, bool) if split == "all" else columns["split"] == split
    out = {name: values[keep] for name, values in columns.items()}
    for name in LATENT_COLUMNS:
        flat = table.column(name).combine_chunks().flatten().to_numpy()
        out[name] = flat.reshape(table.num_rows, *shape)[keep].astype(np.float32, copy=False)
    return out
