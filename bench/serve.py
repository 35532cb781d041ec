"""Serving throughput: the same Serve application with request batching (max_batch_size 8)
against without (max_batch_size 1), same export, same requests, one run, real HTTP on loopback.

    python -m bench.serve [--checkpoint URI] [--concurrency 8] [--requests 48]

Both applications run side by side on one local Ray; each is driven in turn by ``concurrency``
closed-loop clients until ``requests`` answers have come back. Without --checkpoint a tiny
random-weights export is written to a temporary folder: the tiny preset (~1M parameters) with 4
latent channels and a 10-step diffusion head, 32x32 images (a 4x4 latent grid), 9-frame videos
(2 generated latent frames), 8 spatial steps, cfg 3. At that size a sampler call is dominated by
per-operation overhead rather than arithmetic, which is where batching pays on a CPU. The last
line printed is one JSON object; p50_s and p99_s are request latencies of the batched run. The
batch window (--batch-wait, default 0.2 s) is generous because on a busy 2-core machine the
clients of one batch come back spread over more than the 0.05 s default; with a short window a
batch of 8 splits into parts that stay split in a closed loop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

BENCH_OVERRIDES = {"latent_channels": 4, "head": {"sample_steps": 20}}


def drive(url: str, payloads: list[dict], concurrency: int) -> dict:
    """POST every payload with ``concurrency`` clients; throughput, latencies, errors."""
    def one(payload):
        start = time.perf_counter()
        try:
            r = requests.post(f"{url}/v1/generate", json=payload, headers={"Accept": "video/mp4"}, timeout=300)
            ok = r.status_code == 200 and len(r.content) > 0
        except requests.RequestException:
            ok = False
        return ok, time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, payloads))
    wall = time.perf_counter() - start
    latencies = np.array([s for _, s in results])
    return {
        "rps": len(payloads) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "errors": sum(1 for ok, _ in results if not ok),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a stage export (default: a tiny random-weights one)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--frames", type=int, default=9, help="pixel frames per video")
    p.add_argument("--steps", type=int, default=16, help="spatial steps per latent frame")
    p.add_argument("--size", type=int, default=32, help="image height and width")
    p.add_argument("--batch-wait", type=float, default=0.2,
                   help="batch_wait_timeout_s: how long a batch waits to fill (both runs)")
    args = p.parse_args(argv)

    import ray
    from ray import serve

    from tests.support.s3 import free_port
    from tests.support.videos import png_b64
    from videomar.platform.serving.app import start
    from videomar.platform.jobs import parse_spec

    workdir = Path(tempfile.mkdtemp(prefix="videomar-bench-serve-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        from tests.support.tiny_export import write_tiny_export

        checkpoint = write_tiny_export(str(workdir / "export"), overrides=BENCH_OVERRIDES)
    payloads = [{"image": png_b64(args.size, args.size, seed=i % 4), "frames": args.frames, "steps": args.steps,
                 "cfg": 3.0, "prompt": f"a digit {i % 10} moving", "seed": i} for i in range(args.requests)]
    warmup = payloads[: args.concurrency]

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    figures = {}
    try:
        for name, batch in (("unbatched", 1), ("batched", 8)):
            spec = parse_spec({
                "kind": "serve", "export": checkpoint, "app_name": name,
                "http": {"host": "127.0.0.1", "port": port},
                "deployment": {"max_batch_size": batch, "max_ongoing_requests": 16,
                               "batch_wait_timeout_s": args.batch_wait},
                "limits": {"max_frames": args.frames, "max_height": args.size, "max_width": args.size},
                "storage": {"root": str(workdir / "outputs")}, "auth": {"token_env": None},
            })
            url = start(spec, route_prefix=f"/{name}")
            drive(url, warmup, args.concurrency)
            figures[name] = drive(url, payloads, args.concurrency)
            stats = requests.get(f"{url}/v1/model", timeout=60).json()["stats"]
            figures[name]["batch_sizes"] = stats["batch_sizes"]
            serve.delete(name)  # free its replica's CPU before the next run
            print(f"{name} (max_batch_size {batch}): {json.dumps(figures[name])}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)

    b, u = figures["batched"], figures["unbatched"]
    result = {
        "concurrency": args.concurrency,
        "requests": args.requests,
        "batched_rps": round(b["rps"], 3),
        "unbatched_rps": round(u["rps"], 3),
        "batching_speedup": round(b["rps"] / u["rps"], 3),
        "p50_s": round(b["p50_s"], 3),
        "p99_s": round(b["p99_s"], 3),
        "errors": b["errors"] + u["errors"],
        "unbatched_p50_s": round(u["p50_s"], 3),
        "unbatched_p99_s": round(u["p99_s"], 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
