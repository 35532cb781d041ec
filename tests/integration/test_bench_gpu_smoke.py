"""bench.gpu's training and sampler parts run end to end on the CPU (its hidden smoke sizes: tiny
models, fp32, gloo), so the code the GPU run depends on cannot rot where no GPU is at hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cpu_smoke_run_trains_samples_and_prints_one_json_object(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "bench.gpu", "--cpu-smoke", "--parts", "train_base,sampler",
                          "--out", str(tmp_path / "gpu.json")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "gpu.json").read_text())
    assert report["statuses"] == {"train_base": "ok", "sampler": "ok"} and report["passed"] is True
    train, sampler = report["parts"]["train_base"], report["parts"]["sampler"]
    assert train["loss_finite"] and train["steps"] == 6 and train["zero_stage"] == 2 and train["mfu"] is None
    assert train["model_tflops_per_step"] > 0 and train["step_time_s"] > 0
    assert sampler["agree"] and sampler["rel_diff"] <= sampler["tolerance"]
