"""Training throughput and ZeRO-2 sharding: the platform against a plain torch loop, one run.

    python -m bench.train [--steps 30] [--batch 8] [--preset tiny]

Three measurements of the same model, batch and latents, side by side in this process:
  plain     a one-process torch loop: AdamW, the next-frame loss, clip, EMA, no Ray, no DeepSpeed
  platform  the stage trainer (Ray Train + DeepSpeed ZeRO-2) with 1 worker
  two       the same with 2 workers (same batch per worker, so twice the global batch)
Throughputs are medians of per-step samples/s after the first steps (warm-up and compilation);
the plain loop runs before and after the platform runs and the faster of the two counts;
the platform's come from the per-step metrics it logs to MLflow. ZeRO-2 optimizer state per rank
(the AdamW moments each rank holds) is compared with the plain loop's unsharded state.
The data is an in-memory Ray dataset of random posterior moments with the shape of a quickstart
bucket (the dataset pipeline is not what is measured). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch

WARMUP_STEPS = 5
LATENT_SHAPE = (16, 3, 8, 8)  # (C, T', H', W'): a 9-frame 32x32 clip through the quickstart VAE
LATENT_SCALE = 0.5


def make_rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"mean": rng.standard_normal(LATENT_SHAPE, dtype=np.float32),
             "logvar": np.full(LATENT_SHAPE, -4.0, np.float32), "caption": f"clip {i}"} for i in range(count)]


def plain_loop(spec, rows: list[dict], steps: int) -> tuple[float, int]:
    """(median samples/s, AdamW state bytes) of a plain single-process loop."""
    from videomar.model.videomar import build_model
    from videomar.platform.training.data import collate, draw_latents
    from videomar.platform.training.ema import EMA
    from videomar.platform.training.engine import param_groups
    from videomar.platform.training.loop import optimizer_state_bytes

    torch.manual_seed(spec.seed)
    model = build_model(spec.model.build())
    ema = EMA.from_module(model, spec.ema_rate)
    opt = torch.optim.AdamW(param_groups(model, spec.optim.weight_decay), lr=spec.lr, betas=spec.optim.betas)
    b = spec.optim.batch_size
    rates = []
    for step in range(steps):
        started = time.perf_counter()
        chunk = [rows[(step * b + i) % len(rows)] for i in range(b)]
        batch = collate({k: np.stack([r[k] for r in chunk]) for k in ("mean", "logvar")}
                        | {"caption": np.array([r["caption"] for r in chunk])})
        gen = torch.Generator().manual_seed(step)
        latents = draw_latents(batch, LATENT_SCALE, torch.device("cpu"), gen)
        loss = model.training_loss(latents, model.tokenize(batch.captions), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
        ema.update(model)
        rates.append(b / (time.perf_counter() - started))
    return statistics.median(rates[WARMUP_STEPS:]), optimizer_state_bytes(opt)


def platform_run(spec, rows: list[dict], workdir: str) -> tuple[float, float]:
    """(median samples/s, rank 0's optimizer state bytes) of the stage trainer."""
    import ray
    from mlflow.tracking import MlflowClient

    from videomar.platform.training.config import DatasetInfo, plan_stage
    from videomar.platform.tracking import open_stage
    from videomar.platform.training.trainer import fit

    info = DatasetInfo(manifest_uri=f"{workdir}/manifest.json", latent_shape=LATENT_SHAPE, latent_scale=LATENT_SCALE,
                       vae_id="bench", vae_uri=None, clips=len(rows), val_clips=0)
    plan = plan_stage(spec, info)
    runs = open_stage(plan.tracking, "bench-train", spec.name)
    result = fit(plan, None, runs.run_id, ray.data.from_items(rows))
    history = MlflowClient(plan.tracking.tracking_uri).get_metric_history(runs.run_id, "samples_per_s")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    return statistics.median(rates[WARMUP_STEPS:]), float(result.metrics["optimizer_state_bytes"])


def bench_spec(name: str, workers: int, steps: int, batch: int, preset: str, workdir: str, threads: int):
    from videomar.platform.jobs import parse_spec

    t, h, w = LATENT_SHAPE[1:]
    return parse_spec({
        "kind": "train", "name": name, "model": {"preset": preset},
        "data": {"manifest": f"{workdir}/manifest.json", "bucket": {"frames": 9, "height": 32, "width": 32}},
        "optim": {"batch_size": batch}, "schedule": {"steps": steps, "warmup_steps": 2},
        "ema_rate": 0.99, "deepspeed": {"zero_stage": 2}, "resources": {"workers": workers, "cpus_per_worker": threads},
        "checkpoint": {"every": steps, "keep": 1}, "storage": f"{workdir}/runs",
        "mlflow": {"tracking_uri": f"sqlite:///{workdir}/mlflow.db", "experiment": "bench-train"},
        "samples": {"count": 0},
    })


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    p.add_argument("--batch", type=int, default=8, help="clips per worker per step")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the plain loop and of each worker (Ray gives a worker as many as its CPUs)")
    args = p.parse_args(argv)
    if args.steps <= WARMUP_STEPS + 1:
        p.error(f"--steps must exceed {WARMUP_STEPS + 1} (the first {WARMUP_STEPS} steps are warm-up)")

    import ray

    workdir = tempfile.mkdtemp(prefix="videomar-bench-train-")
    rows = make_rows(4 * args.batch)
    one = bench_spec("bench-1w", 1, args.steps, args.batch, args.preset, workdir, args.threads)
    torch.set_num_threads(args.threads)
    plain, unsharded = plain_loop(one, rows, args.steps)
    ray.init(address="local", num_cpus=max(4, 2 * args.threads + 2), include_dashboard=False, log_to_driver=False)
    try:
        platform, _ = platform_run(one, rows, workdir)
        two, sharded = platform_run(bench_spec("bench-2w", 2, args.steps, args.batch, args.preset, workdir, args.threads),
                                    rows, workdir)
    finally:
        ray.shutdown()
    # The plain loop again, after: on a shared machine the better of the two is the fairer baseline.
    plain = max(plain, plain_loop(one, rows, args.steps)[0])
    figures = {
        "plain_samples_per_s": round(plain, 3),
        "platform_samples_per_s": round(platform, 3),
        "overhead_ratio": round(platform / plain, 3),
        "two_worker_samples_per_s": round(two, 3),
        "scaling": round(two / platform, 3),
        "zero2_optimizer_bytes_per_rank": int(sharded),
        "unsharded_optimizer_bytes": int(unsharded),
        "zero2_shard_ratio": round(sharded / unsharded, 3),
        "preset": args.preset, "batch_per_worker": args.batch, "steps": args.steps,
        "threads_per_worker": args.threads,
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
