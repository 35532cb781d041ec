"""The precompute run: list videos -> decode clips -> VAE encode (actor pool) -> Parquet shards,
streamed with Ray Data, then the errors table and the dataset manifest (written last).

Resumable: the content keys already in the output's shards are skipped before decoding pixels, so
a re-run encodes nothing already written, and a killed run re-run writes each missing clip once.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable

from videomar.artifacts import storage
from videomar.data_pipelines.encode import CLIP, ClipEncoder, load_vae_from
from videomar.data_pipelines.errors import InputError, write_errors
from videomar.artifacts.manifest import (DatasetManifest, bucket_manifest, channel_stats, manifest_uri,
                                              write_manifest)
from videomar.artifacts.shards import SCHEMA_VERSION, ShardInfo, read_keys, read_shard_info, shard_uris
from videomar.data_pipelines.sources import list_sources
from videomar.data_pipelines.text import TextConfig, TextResult, embed_captions
from videomar.ray_env import gpus_per_worker
from videomar.data_pipelines.stages import ERROR, SKIP, WRITTEN, ClipParams, decode_source, write_batch

PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class PrecomputeConfig:
    source: str  # folder, s3:// prefix, or manifest (CSV/JSONL/Parquet)
    vae: str  # VAE export directory (local or s3://)
    output: str  # dataset folder (local or s3://)
    clips: ClipParams
    encode_workers: int = 1  # actors in the encoder pool
    encode_batch: int = 8  # clips per VAE call
    encode_cpus: float = 1.0  # CPUs reserved per encoder actor
    encode_gpus: float | str = "auto"  # GPUs per encoder actor; auto = 1 when the cluster has GPUs
    decode_cpus: float = 1.0  # CPUs reserved per decode task
    shard_clips: int = 256  # clips per shard (at most)
    max_error_fraction: float = 0.0  # the run fails when more than this fraction of videos fail
    outside_manifest: bool = False  # a manifest's paths may leave its folder
    text: TextConfig | None = None  # caption embeddings by a local text model, when set

    def resolved(self) -> "PrecomputeConfig":
        """Local paths made absolute on the driver: Ray workers run in other directories."""
        text = self.text and replace(self.text, path=storage.absolute(self.text.path))
        return replace(self, source=storage.absolute(self.source), vae=storage.absolute(self.vae),
                       output=storage.absolute(self.output), text=text)


@dataclass
class Summary:
    output: str
    manifest: str
    videos: int = 0
    encoded: int = 0  # clips encoded and written by this run
    skipped: int = 0  # clips already in the dataset
    clips: int = 0  # clips in the dataset after this run
    errors: list[InputError] = field(default_factory=list)
    seconds: float = 0.0
    max_error_fraction: float = 0.0
    text: TextResult | None = None  # the caption embeddings, when the run has a text encoder

    @property
    def failed_videos(self) -> int:
        return len({e.path for e in self.errors})

    @property
    def exit_status(self) -> int:
        if not self.videos:
            return 1
        return 1 if self.failed_videos / self.videos > self.max_error_fraction else 0

    def lines(self) -> list[str]:
        rate = self.encoded / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"precompute: {self.videos} videos, {self.encoded} clips encoded, {self.skipped} already present, "
            f"{self.clips} clips in the dataset",
            f"precompute: {len(self.errors)} errors in {self.failed_videos} videos; {rate:.1f} clips/s over "
            f"{self.seconds:.1f} s",
            f"precompute: manifest {self.manifest}",
        ]
        if self.text:
            out.insert(2, f"precompute: {self.text.distinct} distinct captions, {self.text.encoded} encoded by this "
                          f"run (text encoder {self.text.encoder_id}, width {self.text.width})")
        for e in self.errors[:20]:
            out.append(f"  error: {e.path} [{e.stage}] {e.error_class}: {e.message}")
        if self.exit_status:
            out.append(f"precompute: FAILED: {self.failed_videos}/{self.videos} videos failed, more than "
                       f"max_error_fraction={self.max_error_fraction}")
        return out


def run_precompute(config: PrecomputeConfig, log: Callable[[str], None] = print,
                   progress: Callable[[Summary, set, float], None] | None = None) -> Summary:
    """Run the pipeline on the connected Ray cluster; returns the summary (also logged). Progress
    goes to ``progress(summary, videos seen, start time)`` after each clip, else to ``log``
    every PROGRESS_EVERY_S."""
    cfg = config.resolved()
    started = time.monotonic()
    vae = load_vae_from(cfg.vae)
    shapes = {b: vae.latent_shape(*b) for b in cfg.clips.buckets}  # (F, H, W) -> (C, T', H', W')
    params = replace(cfg.clips, vae_id=vae.vae_id)
    sources = list_sources(cfg.source, cfg.outside_manifest)
    existing = checked_shards(cfg, params, shapes)  # refuses an output written with another VAE, before any work
    done = read_keys([s.uri for infos in existing.values() for s in infos])
    log(f"precompute: {len(sources)} videos from {cfg.source}; {len(done)} clips already in {cfg.output}")
    summary = Summary(output=cfg.output, manifest=manifest_uri(cfg.output), videos=len(sources),
                      max_error_fraction=cfg.max_error_fraction)
    last_progress, seen = started, set()
    with shared_budget():
        for row in pipeline(cfg, params, shapes, sources, done).iter_rows():
            count_row(summary, row)
            seen.add(row["source"])
            if progress is not None:
                progress(summary, seen, started)
            elif time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                log(progress_line(summary, started))
    if cfg.text is not None:
        summary.text = embed_captions(cfg.text, cfg.output, [s.caption for s in sources], worker_env(cfg))
    summary.seconds = time.monotonic() - started
    write_errors(cfg.output, summary.errors)
    summary.clips = finalize(cfg, params, shapes, vae, len(sources), len(summary.errors), summary.text)
    for line in summary.lines():
        log(line)
    return summary


@contextmanager
def shared_budget():
    """Ray Data without per-operator CPU reservations while the pipeline runs.

    By default Ray Data sets aside a share of the CPUs for each operator; on a small cluster the
    encoder actors' share leaves the decode operator one task at a time, and decoding (the costly
    stage on CPUs) runs serially. Object-store backpressure still bounds memory."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        context.op_resource_reservation_enabled = saved


def pipeline(cfg: PrecomputeConfig, params: ClipParams, shapes: dict, sources: list, done: set):
    """The Ray Dataset of result rows (one per clip or error; latents already written)."""
    import ray.data

    items = [s.row() for s in sources]
    remote = worker_env(cfg)
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.flat_map(decode_source, fn_kwargs={"params": params, "done": frozenset(done)}, num_cpus=cfg.decode_cpus,
                     **remote)
    ds = ds.map_batches(
        ClipEncoder, fn_constructor_kwargs={"vae_uri": cfg.vae, "threads": encoder_threads(cfg)},
        batch_size=cfg.encode_batch,
        compute=ray.data.ActorPoolStrategy(size=cfg.encode_workers), num_cpus=cfg.encode_cpus,
        num_gpus=encoder_gpus(cfg) or None, **remote,
    )
    return ds.map_batches(write_batch, batch_size=cfg.shard_clips, num_cpus=cfg.decode_cpus, **remote,
                          fn_kwargs={"output": cfg.output, "vae_id": params.vae_id, "latent_shapes": shapes})


def worker_env(cfg: PrecomputeConfig) -> dict:
    """Ray remote args giving workers this process's S3 settings when any location is in S3
    (workers may have been started before they were set)."""
    if not any(storage.is_s3(u) for u in (cfg.source, cfg.vae, cfg.output, cfg.text.path if cfg.text else "")):
        return {}
    env = storage.s3_env()
    return {"runtime_env": {"env_vars": env}} if env else {}


def encoder_threads(cfg: PrecomputeConfig) -> int:
    """torch threads per encoder actor: its whole CPUs, at least one."""
    return max(1, int(cfg.encode_cpus))


def encoder_gpus(cfg: PrecomputeConfig) -> float:
    return gpus_per_worker(cfg.encode_gpus)


def count_row(summary: Summary, row: dict) -> None:
    status = row["status"]
    if status == WRITTEN:
        summary.encoded += 1
    elif status == SKIP:
        summary.skipped += 1
    elif status == ERROR:
        summary.errors.append(InputError(path=row["source"], stage=row["error_stage"],
                                         error_class=row["error_class"], message=row["error_message"]))
    elif status == CLIP:  # pragma: no cover - the writer marks every clip
        raise RuntimeError(f"{row['source']}: clip {row['clip_index']} reached the end unwritten")


def progress_line(summary: Summary, started: float) -> str:
    rate = summary.encoded / max(time.monotonic() - started, 1e-9)
    return (f"precompute: {summary.encoded} clips encoded, {summary.skipped} skipped, {len(summary.errors)} "
            f"errors ({rate:.1f} clips/s)")


def finalize(cfg: PrecomputeConfig, params: ClipParams, shapes: dict, vae, videos: int, errors: int,
             text: TextResult | None = None) -> int:
    """Write the manifest from the shards now in the output (their footers only); returns the clip count."""
    buckets, infos = [], []
    for bucket, shard_infos in checked_shards(cfg, params, shapes).items():
        buckets.append(bucket_manifest(bucket, shapes[bucket], shard_infos, cfg.output))
        infos.extend(shard_infos)
    mean, std = channel_stats(infos, vae.latent_channels)
    write_manifest(cfg.output, DatasetManifest(
        schema_version=SCHEMA_VERSION, vae_id=params.vae_id, latent_scale=float(vae.scale),
        vae_uri=vae_location(cfg.vae, cfg.output), buckets=buckets, channel_mean=mean, channel_std=std,
        errors=errors, videos=videos, vae=vae.summary(), text=text_manifest(cfg, text),
    ))
    return sum(b.clips for b in buckets)


def text_manifest(cfg: PrecomputeConfig, text: TextResult | None) -> dict:
    """The manifest's record of the caption embeddings (empty without a text encoder)."""
    if text is None or cfg.text is None:
        return {}
    return {"encoder_id": text.encoder_id, "path": cfg.text.path, "width": text.width,
            "max_length": cfg.text.max_length, "captions": text.distinct}


def checked_shards(cfg: PrecomputeConfig, params: ClipParams, shapes: dict) -> dict[tuple, list[ShardInfo]]:
    """The shards in the output, per bucket (footers only); ValueError names a shard written with
    another VAE or latent shape."""
    out = {}
    for bucket in params.buckets:
        out[bucket] = [read_shard_info(u) for u in shard_uris(cfg.output, bucket)]
        for s in out[bucket]:
            if s.vae_id != params.vae_id or tuple(s.latent_shape) != tuple(shapes[bucket]):
                raise ValueError(
                    f"{s.uri}: written with VAE {s.vae_id} and latent shape {list(s.latent_shape)}, but this run "
                    f"uses VAE {params.vae_id} with shape {list(shapes[bucket])}; use a new output folder"
                )
    return out


def vae_location(vae: str, output: str) -> str:
    """The VAE as the manifest names it: relative to the dataset folder when both are local."""
    if storage.is_s3(vae) or storage.is_s3(output):
        return vae
    return os.path.relpath(vae, output)
