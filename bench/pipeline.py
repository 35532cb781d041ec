"""Benchmark: the Ray Data precompute pipeline against a plain one-process loop doing the same
work (decode, VAE encode, write shards) on the same sample videos in the same run, and the peak
memory of the pipeline at 1x and 4x the number of videos.

The workload is a first curriculum stage's: sample videos of --size pixels square at --fps,
cut into clips of the --buckets shapes at --target-fps (resize + centre crop), encoded by a VAE
of the quickstart's architecture (16 channels, temporal 4, spatial 8). Decoding the large source
frames dominates, as it does on CPUs in a real run; at the quickstart's own 32x32 clips from
64-pixel videos a clip costs a few milliseconds and any pipeline is all overhead. The loop runs
with torch's default threads (every core), as a plain script would.

Peak memory is the largest sum of resident set sizes of this process and all its descendants (the
local Ray cluster's processes and workers), sampled while the pipeline runs: streaming keeps it
flat as the input grows.

    python -m bench.pipeline [--videos 32] [--size 720] [--frames 100] [--fps 24] [--target-fps 8]
                             [--buckets 17x128x128]

The last line printed is one JSON object: videos, clips, ray_clips_per_s, sequential_clips_per_s,
speedup, peak_rss_mb, peak_rss_mb_4x, ray_clips_per_s_4x (the 4x run's throughput), buckets,
and torch_threads (the loop's).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ENCODE_BATCH = 4
SHARD_CLIPS = 64
SAMPLE_EVERY_S = 0.1


def parse_buckets(text: str) -> tuple[tuple[int, int, int], ...]:
    """"17x128x128,9x64x64" -> ((17, 128, 128), (9, 64, 64))."""
    try:
        return tuple(tuple(int(n) for n in part.split("x")) for part in text.split(","))  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--buckets {text!r}: expected FRAMESxHEIGHTxWIDTH[,...]") from None


def config(source: str, vae: str, output: str, buckets, target_fps: float | None):
    from videomar.data_pipelines.precompute import PrecomputeConfig
    from videomar.data_pipelines.stages import ClipParams

    # Two encoder actors, one per core, and decode tasks beside them: every stage overlaps.
    clips = ClipParams(buckets=buckets, target_fps=target_fps, val_fraction=0.2)
    return PrecomputeConfig(
        source=source, vae=vae, output=output, clips=clips,
        encode_workers=2, encode_batch=ENCODE_BATCH, encode_cpus=0.5, decode_cpus=0.5, shard_clips=SHARD_CLIPS,
    )


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Row dicts -> the column batch Ray Data would hand a map_batches function."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        kind = object if isinstance(values[0], (str, bytes)) else None
        out[key] = np.array(values, dtype=kind)
    return out


def sequential(source: str, vae: str, output: str, buckets, target_fps: float | None) -> int:
    """The same stages in one process, one after another: returns the clips written."""
    from videomar.data_pipelines.encode import ClipEncoder, load_vae_from
    from videomar.data_pipelines.sources import list_sources
    from videomar.data_pipelines.stages import WRITTEN, decode_source, write_batch

    cfg = config(source, vae, output, buckets, target_fps)
    model = load_vae_from(vae)
    params = replace(cfg.clips, vae_id=model.vae_id)
    shapes = {b: model.latent_shape(*b) for b in buckets}
    encoder = ClipEncoder(vae)
    written, pending, encoded = 0, [], []

    def flush(batch_rows: list[dict]) -> int:
        out = write_batch(columns(batch_rows), output, params.vae_id, shapes)
        return int((out["status"] == WRITTEN).sum())

    for src in list_sources(source):
        for row in decode_source(src.row(), params):
            pending.append(row)
            if len(pending) == ENCODE_BATCH:
                encoded += rows_of(encoder(columns(pending)))
                pending = []
            if len(encoded) >= SHARD_CLIPS:
                written += flush(encoded)
                encoded = []
    if pending:
        encoded += rows_of(encoder(columns(pending)))
    if encoded:
        written += flush(encoded)
    return written


def rows_of(batch: dict[str, np.ndarray]) -> list[dict]:
    return [{k: v[i] for k, v in batch.items()} for i in range(len(batch["status"]))]


class PeakRSS:
    """Samples the summed RSS of this process and its descendants in a thread; .peak_mb."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def total(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.total())
            time.sleep(SAMPLE_EVERY_S)

    def __enter__(self) -> "PeakRSS":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def ray_run(source: str, vae: str, output: str, buckets, target_fps: float | None) -> tuple[int, float, float]:
    """(clips written, seconds, peak RSS MB) of one pipeline run."""
    from videomar.data_pipelines.precompute import run_precompute

    with PeakRSS() as rss:
        started = time.perf_counter()
        summary = run_precompute(config(source, vae, output, buckets, target_fps), log=lambda line: None)
        seconds = time.perf_counter() - started
    if summary.errors:
        raise RuntimeError(f"benchmark inputs failed: {summary.lines()}")
    return summary.encoded, seconds, rss.peak_mb


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=32, help="videos at 1x (the 4x run uses four times as many)")
    parser.add_argument("--size", type=int, default=720, help="the sample videos' width and height in pixels")
    parser.add_argument("--frames", type=int, default=100, help="frames per sample video")
    parser.add_argument("--fps", type=int, default=24, help="the sample videos' frame rate")
    parser.add_argument("--target-fps", type=float, default=8.0, help="the clips' frame rate (sets the stride)")
    parser.add_argument("--buckets", type=parse_buckets, default=parse_buckets("17x128x128"),
                        help="clip shapes FRAMESxHEIGHTxWIDTH, comma-separated")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import torch

    from videomar.data_pipelines.sample_data import write_sample_videos
    from tests.support.latents import quickstart_vae

    with tempfile.TemporaryDirectory(prefix="videomar-bench-pipeline-") as tmp:
        root = Path(tmp)
        one = str(write_sample_videos(root / "x1", args.videos, seed=0, frames=args.frames, size=args.size,
                                      fps=args.fps))
        four = str(write_sample_videos(root / "x4", 4 * args.videos, seed=0, frames=args.frames, size=args.size,
                                       fps=args.fps))
        vae = quickstart_vae(root / "vae")
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        try:
            run = (args.buckets, args.target_fps)
            ray_run(one, vae, str(root / "warmup"), *run)  # starts worker processes once, as a long run would
            clips, ray_s, peak = ray_run(one, vae, str(root / "ray"), *run)
            started = time.perf_counter()
            seq_clips = sequential(one, vae, str(root / "sequential"), *run)
            seq_s = time.perf_counter() - started
            clips_4x, ray_4x_s, peak_4x = ray_run(four, vae, str(root / "ray4x"), *run)
        finally:
            ray.shutdown()
    if seq_clips != clips:
        raise RuntimeError(f"the loop wrote {seq_clips} clips, the pipeline {clips}")
    result = {
        "videos": args.videos, "clips": clips, "ray_clips_per_s": round(clips / ray_s, 2),
        "sequential_clips_per_s": round(seq_clips / seq_s, 2), "speedup": round(seq_s / ray_s, 2),
        "peak_rss_mb": round(peak, 1), "peak_rss_mb_4x": round(peak_4x, 1),
        "ray_clips_per_s_4x": round(clips_4x / ray_4x_s, 2),
        "buckets": ["x".join(map(str, b)) for b in args.buckets], "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
