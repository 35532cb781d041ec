"""Whole training stages as a user runs them, against a plain torch loop, in one process.

    python -m bench.train [--small-steps 400] [--large-steps 300] [--batch 8] [--preset tiny]

The data is synthetic latents written as real Parquet shards with a real manifest, in two buckets:
  small   64 clips: 8 batches per epoch, so a stage runs many epochs (from memory)
  large   2,048 clips, streamed (data.memory_mb is set below the bucket's size): shuffled windows
          read ahead by a background thread, across epoch boundaries
Each stage runs through ``run_stage`` (preflight, MLflow runs, Ray Train + DeepSpeed ZeRO-2 with
1 worker, final checkpoint, export) and is timed from its start to its return:
  startup   until the first optimizer step ends, split into ray (starting the local Ray; the
            first stage only), driver (preflight, shard footers, MLflow), worker_group (from
            TorchTrainer.fit to the worker's train function), deepspeed (model + engine build),
            dataset (the first batch's wait) and first_step (its compute)
  after     the rest, split into steps (compute), stalls (waits for batches) and other
            (checkpoint, export, MLflow, shutting Ray Train down)
stage_efficiency = (steps after the first x the plain loop's step time on the same batches held in
memory) / (the stage's wall time after its first step). The plain loop (AdamW, the next-frame
loss, clip, EMA; no Ray, no DeepSpeed) runs before and after the stages and its faster run counts.
overhead_ratio and scaling compare median step rates (after warm-up) of the small stage, of the
plain loop and of a short 2-worker stage; ZeRO-2's optimizer state per rank is compared with the
plain loop's unsharded state. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from itertools import islice

import torch

WARMUP_STEPS = 5
BUCKET = (9, 32, 32)
LATENT_SHAPE = (16, 3, 8, 8)  # (C, T', H', W'): a 9-frame 32x32 clip through the quickstart VAE
LATENT_SCALE = 0.5
SMALL_CLIPS = 64
LARGE_CLIPS = 2048
LARGE_MEMORY_MB = 8  # below the large bucket's 49 MiB: it streams, in windows of about 170 clips
TWO_WORKER_STEPS = 40


def plain_loop(spec, batches: list, steps: int) -> tuple[float, int]:
    """(median step seconds, AdamW state bytes) of a plain single-process loop over ``batches``."""
    from videomar.model.videomar import build_model
    from videomar.platform.training.data import draw_latents
    from videomar.platform.training.ema import EMA
    from videomar.platform.training.engine import param_groups
    from videomar.platform.training.loop import optimizer_state_bytes

    torch.manual_seed(spec.seed)
    model = build_model(spec.model.build())
    ema = EMA.from_module(model, spec.ema_rate)
    opt = torch.optim.AdamW(param_groups(model, spec.optim.weight_decay), lr=spec.lr, betas=spec.optim.betas)
    times = []
    for step in range(steps):
        started = time.perf_counter()
        batch = batches[step % len(batches)]
        gen = torch.Generator().manual_seed(step)
        latents = draw_latents(batch, LATENT_SCALE, torch.device("cpu"), gen)  # [B, C, T', H', W']
        loss = model.training_loss(latents, model.tokenize(batch.captions), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
        ema.update(model)
        times.append(time.perf_counter() - started)
    return statistics.median(times[WARMUP_STEPS:]), optimizer_state_bytes(opt)


def held_batches(spec, count: int) -> tuple[list, bool]:
    """The stage's first ``count`` batches, read once and held in memory (the plain loop's data),
    and whether the stage holds its bucket in memory (else it streams it)."""
    from videomar.platform.training.data import RankStream, load_stage_data, rank_data

    d = spec.data
    data = load_stage_data(d.manifest, (d.bucket.frames, d.bucket.height, d.bucket.width), d.split, d.memory_mb)
    rank = rank_data(data, 0, 1)
    stream = RankStream(rank, 0, spec.seed).batches(spec.optim.batch_size, 0, 0)
    return [batch for _, _, batch in islice(stream, count)], rank.in_memory


def bench_spec(name: str, manifest: str, workers: int, steps: int, args, workdir: str, memory_mb: int = 2048):
    from videomar.platform.jobs import parse_spec

    frames, height, width = BUCKET
    return parse_spec({
        "kind": "train", "name": name, "model": {"preset": args.preset},
        "data": {"manifest": manifest, "bucket": {"frames": frames, "height": height, "width": width},
                 "memory_mb": memory_mb},
        "optim": {"batch_size": args.batch}, "schedule": {"steps": steps, "warmup_steps": 2},
        "ema_rate": 0.99, "deepspeed": {"zero_stage": 2},
        "resources": {"workers": workers, "cpus_per_worker": args.threads},
        "checkpoint": {"every": steps, "keep": 1}, "storage": f"{workdir}/runs",
        "mlflow": {"tracking_uri": f"sqlite:///{workdir}/mlflow.db", "experiment": "bench-train"},
        "samples": {"count": 0},
    })


def run_timed(spec) -> tuple[dict, dict]:
    """Run the stage as ``videomar run`` does; (wall-clock marks, its MLflow metric histories)."""
    from mlflow.tracking import MlflowClient

    from videomar.platform.jobs.train import preflight, run_stage
    from videomar.platform.training import core

    marks = {"start": time.time()}
    fit = core.fit

    def marked_fit(*args, **kwargs):
        marks["fit"] = time.time()
        return fit(*args, **kwargs)

    core.fit = marked_fit  # only to mark when the driver hands over to Ray Train
    try:
        result = run_stage(spec, preflight(spec))
    finally:
        core.fit = fit
    marks["end"] = time.time()
    client = MlflowClient(spec.mlflow.tracking_uri)
    keys = ("step_time_s", "data_wait_s", "samples_per_s", "startup_worker_at", "startup_engine_at", "first_step_at")
    history = {k: [m.value for m in sorted(client.get_metric_history(result.run_id, k), key=lambda m: m.step)]
               for k in keys}
    history["optimizer_state_bytes"] = [float(result.metrics["optimizer_state_bytes"])]
    return marks, history


def stage_figures(marks: dict, h: dict, plain_step: float, ray_s: float) -> dict:
    """Start-up and the rest of one stage, and its efficiency against the plain loop."""
    first = h["first_step_at"][0]
    wait, step = h["data_wait_s"], h["step_time_s"]
    after = marks["end"] - first
    steps_s, stalls_s = sum(step[1:]) - sum(wait[1:]), sum(wait[1:])
    return {
        "startup_s": round(ray_s + first - marks["start"], 2),
        "startup": {"ray": round(ray_s, 2), "driver": round(marks["fit"] - marks["start"], 2),
                    "worker_group": round(h["startup_worker_at"][0] - marks["fit"], 2),
                    "deepspeed": round(h["startup_engine_at"][0] - h["startup_worker_at"][0], 2),
                    "dataset": round(wait[0], 3),
                    "first_step": round(first - h["startup_engine_at"][0] - wait[0], 2)},
        "wall_s": round(ray_s + marks["end"] - marks["start"], 2),
        "after_first_step_s": round(after, 2),
        "steps_s": round(steps_s, 2), "stalls_s": round(stalls_s, 3), "other_s": round(after - steps_s - stalls_s, 2),
        "max_stall_s": round(max(wait[1:]), 3),
        "efficiency": round((len(step) - 1) * plain_step / after, 3),
    }


def median_rate(h: dict) -> float:
    return statistics.median(h["samples_per_s"][WARMUP_STEPS:])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small-steps", type=int, default=400, help="optimizer steps of the small-bucket stage")
    p.add_argument("--large-steps", type=int, default=300, help="optimizer steps of the large-bucket stage")
    p.add_argument("--plain-steps", type=int, default=30, help="steps of each plain-loop measurement")
    p.add_argument("--batch", type=int, default=8, help="clips per worker per step")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the plain loop and of each worker (Ray gives a worker as many as its CPUs)")
    args = p.parse_args(argv)
    if min(args.small_steps, args.large_steps, args.plain_steps) <= WARMUP_STEPS + 1:
        p.error(f"every --*-steps must exceed {WARMUP_STEPS + 1} (the first {WARMUP_STEPS} steps are warm-up)")

    import ray

    from tests.support.latents import synthetic_latents

    workdir = tempfile.mkdtemp(prefix="videomar-bench-train-")
    small_manifest = synthetic_latents(f"{workdir}/small", SMALL_CLIPS, LATENT_SHAPE, BUCKET, latent_scale=LATENT_SCALE)
    large_manifest = synthetic_latents(f"{workdir}/large", LARGE_CLIPS, LATENT_SHAPE, BUCKET, latent_scale=LATENT_SCALE)
    small = bench_spec("bench-small", small_manifest, 1, args.small_steps, args, workdir)
    large = bench_spec("bench-large", large_manifest, 1, args.large_steps, args, workdir, LARGE_MEMORY_MB)
    two = bench_spec("bench-2w", small_manifest, 2, TWO_WORKER_STEPS, args, workdir)
    torch.set_num_threads(args.threads)
    held = {name: held_batches(spec, args.plain_steps) for name, spec in (("small", small), ("large", large))}
    plain = {name: plain_loop(small, batches, args.plain_steps) for name, (batches, _) in held.items()}

    started = time.time()
    ray.init(address="local", num_cpus=max(4, 2 * args.threads + 2), include_dashboard=False, log_to_driver=False)
    ray_s = time.time() - started
    try:
        runs = {"small": run_timed(small), "large": run_timed(large), "two": run_timed(two)}
    finally:
        ray.shutdown()
    # The plain loop again, after: on a shared machine the better of the two is the fairer baseline.
    for name, (batches, _) in held.items():
        again = plain_loop(small, batches, args.plain_steps)
        plain[name] = (min(plain[name][0], again[0]), plain[name][1])

    stages = {name: {"data": "memory" if held[name][1] else "streamed",
                     **stage_figures(*runs[name], plain[name][0], ray_s if name == "small" else 0.0)}
              for name in ("small", "large")}
    one_rate, two_rate = median_rate(runs["small"][1]), median_rate(runs["two"][1])
    plain_rate = args.batch / plain["small"][0]
    sharded, unsharded = runs["two"][1]["optimizer_state_bytes"][0], plain["small"][1]
    figures = {
        "stage_efficiency_small": stages["small"]["efficiency"],
        "stage_efficiency_large": stages["large"]["efficiency"],
        "startup_s": stages["small"]["startup_s"],
        "small": stages["small"], "large": stages["large"],
        "plain_step_s": {name: round(v[0], 4) for name, v in plain.items()},
        "plain_samples_per_s": round(plain_rate, 3),
        "platform_samples_per_s": round(one_rate, 3),
        "overhead_ratio": round(one_rate / plain_rate, 3),
        "two_worker_samples_per_s": round(two_rate, 3),
        "scaling": round(two_rate / one_rate, 3),
        "zero2_optimizer_bytes_per_rank": int(sharded),
        "unsharded_optimizer_bytes": int(unsharded),
        "zero2_shard_ratio": round(sharded / unsharded, 3),
        "preset": args.preset, "batch_per_worker": args.batch, "small_clips": SMALL_CLIPS,
        "large_clips": LARGE_CLIPS, "small_steps": args.small_steps, "large_steps": args.large_steps,
        "threads_per_worker": args.threads,
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
