"""The GPU path in one run: training steps, the sampler, precompute and serving on one CUDA GPU.

    python -m bench.gpu [--parts train_base,train_large,sampler,precompute,serve] [--out FILE]

Parts, each run on its own (one that cannot run is reported as skipped with the reason, one that
breaks as failed with the error; nothing is estimated):
  train_base    the `base` preset trained 50 steps through the platform's training step
                (DeepSpeed ZeRO-2, bf16 autocast, torch's fused AdamW, NCCL) on synthetic latents
                of 2 latent frames x 1,024 tokens (32x32); loss finite and falling, step_time_s,
                mfu (model FLOPs from bench/gpu_flops.py over the GPU's dense bf16 peak)
  train_large   the same for `large` (the paper's ~1.4B), with peak_memory_gb
  sampler       `large` in bf16 at 1,024 tokens per frame, 6 frames, 64 spatial steps, cfg 3: the
                KV-cached sampler against recompute (they must agree within bf16 rounding), and
                frames per second against the paper's 107 s for 6 frames
  precompute    the quickstart precompute job on a local Ray: the VAE encoder actors on the GPU
  serve         a Ray Serve replica on the GPU answering one POST /v1/generate
It also times a large bf16 matrix product, the ceiling MFU can be read against. On an H200,
train_base took 57 s, sampler 206 s and precompute 19 s (README: "On a GPU"). Without CUDA it
prints one line saying so and exits 0. The last line printed is one JSON object; the exit status
is 1 when a part failed or missed a check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

PARTS = ("train_base", "train_large", "sampler", "precompute", "serve")
# The run's sizes; "cpu" is a hidden smoke run of the same code paths with tiny models.
SIZES = {
    "cuda": {"train_base": dict(preset="base", batch=16, steps=50, frames=2, grid=32),
             "train_large": dict(preset="large", batch=8, steps=50, frames=2, grid=32),
             "sampler": dict(preset="large", grid=32, frames=6, steps=64, cfg=3.0)},
    "cpu": {"train_base": dict(preset="tiny", batch=2, steps=6, frames=2, grid=4),
            "train_large": dict(preset="small", batch=2, steps=6, frames=2, grid=4),
            "sampler": dict(preset="tiny", grid=4, frames=2, steps=4, cfg=3.0)},
}
TARGETS = {"large_mfu": 0.40, "sampler_speedup_vs_paper": 2.0}  # issue 17's targets once measured
NEEDS = {"train_base": ("deepspeed", "pydantic"), "train_large": ("deepspeed", "pydantic"), "sampler": (),
         "precompute": ("ray", "decord", "imageio_ffmpeg"), "serve": ("ray", "fastapi", "imageio_ffmpeg")}
NO_CUDA = "bench.gpu: no CUDA device (torch.cuda.is_available() is False): nothing to measure here"


def missing_module(names: tuple[str, ...]) -> str | None:
    """Why a part cannot run here (a module it needs that does not import), or None."""
    import importlib

    for name in names:
        try:
            module = importlib.import_module(name)
            if name == "imageio_ffmpeg":
                module.get_ffmpeg_exe()  # the package without its ffmpeg binary cannot write MP4s
        except Exception as err:  # noqa: BLE001 - any import failure means the part cannot run
            return f"{name} is not usable here ({type(err).__name__}: {str(err).strip()[:200]})"
    return None


def run_part(name: str, fn, needs: tuple[str, ...]) -> dict:
    """Run one part: its figures with status ok (or failed, when a check in them is false),
    skipped with the reason, or failed with the error. Never raises."""
    reason = missing_module(needs)
    if reason is not None:
        print(f"bench.gpu: {name} skipped: {reason}", flush=True)
        return {"status": "skipped", "reason": reason}
    print(f"bench.gpu: {name} ...", flush=True)
    started = time.perf_counter()
    try:
        figures = fn()
    except Exception as err:  # noqa: BLE001 - a broken part is reported, the others still run
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(err).__name__}: {str(err).strip()[:500]}",
                "seconds": round(time.perf_counter() - started, 1)}
    result = {"status": "ok", **figures, "seconds": round(time.perf_counter() - started, 1)}
    failed = [k for k, v in part_checks(name, figures).items() if not v]
    if failed:
        result.update(status="failed", error=f"checks failed: {', '.join(failed)}")
    print(f"bench.gpu: {name}: {json.dumps(result)}", flush=True)
    return result


def part_checks(name: str, figures: dict) -> dict[str, bool]:
    """What must hold for a part to pass (targets are reported apart: they are goals, not bugs)."""
    if name.startswith("train_"):
        return {"loss_finite": figures["loss_finite"], "loss_falling": figures["loss_falling"]}
    if name == "sampler":
        return {"finite": figures["finite"], "agree": figures["agree"]}
    return {"ok": figures["ok"]}


def targets(parts: dict) -> dict:
    """Issue 17's targets, where the figures were measured (None where not)."""
    large, sampler = parts.get("train_large", {}), parts.get("sampler", {})
    mfu, speedup = large.get("mfu"), sampler.get("speedup_vs_paper")
    return {"large_mfu_at_least": TARGETS["large_mfu"],
            "large_mfu_met": None if mfu is None else mfu >= TARGETS["large_mfu"],
            "sampler_speedup_vs_paper_at_least": TARGETS["sampler_speedup_vs_paper"],
            "sampler_speedup_met": None if speedup is None else speedup >= TARGETS["sampler_speedup_vs_paper"]}


def build_report(environment: dict, parts: dict) -> dict:
    """The JSON object printed last: the environment, every part, the targets and a verdict."""
    statuses = {name: part["status"] for name, part in parts.items()}
    return {"bench": "gpu", **environment, "parts": parts, "targets": targets(parts),
            "statuses": statuses, "passed": all(s != "failed" for s in statuses.values())}


def environment(device) -> dict:
    import torch

    from bench.gpu_train import device_peak

    name, peak = device_peak(device)
    versions = {}
    for module in ("deepspeed", "ray"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - reported as absent
            versions[module] = None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": name,
            "bf16_peak_tflops": None if peak is None else round(peak / 1e12, 1),
            "matmul_bf16_tflops": matmul_tflops(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, **versions}


def matmul_tflops(device, n: int = 8192, reps: int = 20) -> float | None:
    """The median rate of an n^3 bf16 matrix product on random data (CUDA events), TFLOP/s."""
    import statistics

    import torch

    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return round(2 * n**3 / statistics.median(times) / 1e12, 1)


def part_functions(device, sizes: dict, peak: float | None, workdir: Path) -> dict:
    from bench import gpu_ray, gpu_sampler, gpu_train

    return {
        "train_base": lambda: gpu_train.train_figures(device=device, peak=peak, **sizes["train_base"]),
        "train_large": lambda: gpu_train.train_figures(device=device, peak=peak, **sizes["train_large"]),
        "sampler": lambda: gpu_sampler.sampler_figures(device=device, **sizes["sampler"]),
        "precompute": lambda: gpu_ray.precompute_figures(workdir / "precompute"),
        "serve": lambda: gpu_ray.serve_figures(workdir / "serve"),
    }


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"--parts: unknown {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", type=parse_parts, default=list(PARTS), help="comma-separated parts to run (default: all)")
    p.add_argument("--out", help="also write the JSON object to this file")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="start no part after this many seconds (a started part runs to its end)")
    p.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # tests: same code, tiny sizes
    args = p.parse_args(argv)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before CUDA starts
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print(NO_CUDA, flush=True)
        return 0
    device = torch.device("cuda", 0) if torch.cuda.is_available() and not args.cpu_smoke else torch.device("cpu")
    env = environment(device)
    peak = None if env["bf16_peak_tflops"] is None else env["bf16_peak_tflops"] * 1e12
    workdir = Path(tempfile.mkdtemp(prefix="videomar-bench-gpu-"))
    functions = part_functions(device, SIZES[device.type], peak, workdir)
    parts, started = {}, time.monotonic()
    try:
        for name in args.parts:
            if time.monotonic() - started >= args.budget_s:
                parts[name] = {"status": "skipped", "reason": f"the run's time budget ({args.budget_s:.0f} s) was spent"}
                continue
            parts[name] = run_part(name, functions[name], NEEDS[name])
    finally:
        finish()
        shutil.rmtree(workdir, ignore_errors=True)
    report = build_report(env, parts)
    line = json.dumps(report)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)
    return 0 if report["passed"] else 1


def finish() -> None:
    """Stop what the parts started: Ray, then the process group."""
    if "ray" in sys.modules:
        from bench.gpu_ray import stop_ray

        stop_ray()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
