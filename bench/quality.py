"""Quality of the tiny preset after a fixed training budget on the sample videos, one run.

    python -m bench.quality [--videos 96] [--vae-steps 100] [--steps 100] [--eval-videos 32] [--workdir DIR]

The fixed budget (the defaults; figures are only comparable between runs with the same flags):
  data      --videos sample videos of moving digits (seed 0, 24 frames, 64x64), cut into
            9-frame 32x32 clips (two per video); 20% of the videos held out (the quickstart
            precompute spec), so 96 videos give about 38 held-out clips
  VAE       the quickstart VAE spec, trained for --vae-steps steps (2 workers)
  model     the tiny preset, the quickstart stage-2 spec (9-frame clips, batch 4 per worker,
            2 workers, ZeRO-2, fp32 on CPU) from scratch for --steps optimizer steps
  eval      evaluate_export on every held-out clip up to --eval-videos: continued from 2 latent
            frames (psnr_2cond, ssim_2cond, dynamics_2cond) and from 1 (digit consistency,
            dynamics); 8 spatial steps, cfg 3, built-in FVD features; loss on up to 32 clips
The baselines come from the same run: copying the last condition frame (psnr_copy_last_2cond,
ssim_copy_last_2cond), the ground truth's own digit consistency and dynamics (dynamics_gt,
dynamics_gt_2cond), and the digit classifier's accuracy on the ground truth of single-digit clips
(classifier_accuracy_gt).
train_minutes is the wall time of the training stage alone. The last line printed is one JSON
object: the quickstart's quality.json keys and the ratios below.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

JOBS = Path(__file__).resolve().parents[1] / "jobs" / "quickstart"
BUCKET = {"frames": 9, "height": 32, "width": 32}


def quickstart_spec(name: str, changes: dict[str, Any]):
    """A quickstart job spec with top-level keys replaced and nested sections updated."""
    from videomar.platform.jobs import parse_spec

    data = yaml.safe_load((JOBS / name).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return parse_spec(data, f"{JOBS / name} (bench.quality)")


def run(work: Path, args) -> dict[str, Any]:
    from videomar.artifacts.manifest import manifest_uri
    from videomar.data_pipelines.sample_data import write_sample_videos
    from videomar.platform.evaluation.job import evaluate_export
    from videomar.platform.evaluation.report import quality_figures
    from videomar.platform.jobs import execute
    from videomar.platform.jobs.train import preflight, run_stage
    from videomar.platform.quickstart import SAMPLE_FRAMES
    from videomar.platform.specs.eval import EvalOptions
    from videomar.ray_env import ensure_ray

    tracking = f"sqlite:///{work / 'mlflow.db'}"
    sources = write_sample_videos(work / "sample", args.videos, seed=0, frames=SAMPLE_FRAMES)
    ensure_ray(num_cpus=max(4, os.cpu_count() or 1))
    vae = quickstart_spec("vae.yaml", {"source": str(sources), "train": {"steps": args.vae_steps},
                                       "export": str(work / "vae")})
    if execute(vae) != 0:
        raise RuntimeError("the VAE training job failed")
    latents = str(work / "latents")
    precompute = quickstart_spec("precompute.yaml", {"source": str(sources), "vae": str(work / "vae"),
                                                     "output": latents, "buckets": [BUCKET]})
    if execute(precompute) != 0:
        raise RuntimeError("the precompute job failed")
    stage = quickstart_spec("stage2.yaml", {
        "name": "bench-quality", "data": {"manifest": manifest_uri(latents), "bucket": BUCKET},
        "schedule": {"steps": args.steps, "warmup_steps": min(20, args.steps)},
        "checkpoint": {"every": args.steps}, "storage": str(work / "runs"), "init_from": None,
        "mlflow": {"tracking_uri": tracking, "experiment": "bench-quality"}, "samples": {"count": 0},
    })
    started = time.perf_counter()
    trained = run_stage(stage, preflight(stage))
    train_minutes = (time.perf_counter() - started) / 60
    options = EvalOptions(videos=args.eval_videos, loss_clips=32, steps=8, batch_size=4)
    result = evaluate_export(trained.export_uri, manifest_uri(latents), BUCKET, options=options,
                             run_id=trained.run_id, tracking_uri=tracking)
    m = result["metrics"]
    out: dict[str, Any] = {"train_minutes": round(train_minutes, 3), **quality_figures(result)}
    out.update({
        "psnr_2cond_gain_over_copy_last_db": _difference(m, "psnr_2cond", "psnr_copy_last_2cond"),
        "ssim_2cond_ratio_to_copy_last": _ratio(m, "ssim_2cond", "ssim_copy_last_2cond"),
        "digit_consistency_ratio_to_gt": _ratio(m, "digit_consistency", "digit_consistency_gt"),
        "dynamics_ratio_to_gt": _ratio(m, "dynamics", "dynamics_gt"),  # target: within [0.5, 2]
        "dynamics_2cond_ratio_to_gt": _ratio(m, "dynamics_2cond", "dynamics_gt_2cond"),
        "val_loss": m["val_loss"], "fvd_builtin": m["fvd"],
        "sample_videos": args.videos, "vae_steps": args.vae_steps, "train_steps": args.steps,
        "val_clips": int(m["loss_clips"]),
    })
    return out


def _ratio(m: dict[str, float], key: str, reference: str) -> float:
    return m[key] / m[reference] if m.get(key) is not None and m.get(reference) else math.nan


def _difference(m: dict[str, float], key: str, reference: str) -> float:
    return m[key] - m[reference] if m.get(key) is not None and m.get(reference) is not None else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=96, help="sample videos (default 96)")
    parser.add_argument("--vae-steps", type=int, default=100, help="VAE training steps (default 100)")
    parser.add_argument("--steps", type=int, default=100, help="model training steps (default 100)")
    parser.add_argument("--eval-videos", type=int, default=32,
                        help="held-out clips continued: every one up to this many (default 32)")
    parser.add_argument("--workdir", default=None, help="keep everything here (default: a temporary dir)")
    args = parser.parse_args()
    try:
        if args.workdir:
            work = Path(args.workdir).resolve()
            work.mkdir(parents=True, exist_ok=True)
            out = run(work, args)
        else:
            with tempfile.TemporaryDirectory(prefix="videomar-bench-quality-") as tmp:
                out = run(Path(tmp), args)
    finally:
        import ray

        ray.shutdown()  # the workers' last log lines come before the JSON line, not after it
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    print(json.dumps(clean))


if __name__ == "__main__":
    main()
