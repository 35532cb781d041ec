"""bench.gpu's CPU-only parts: the written-down FLOP count against torch's own counting, the GPU
peaks, the JSON object it prints, and its one line without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench import gpu
from bench.gpu_flops import StepShape, bf16_peak, forward_flops, mfu, train_step_flops
from videomar.model.config import model_config
from videomar.model.videomar import VideoMAR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_the_forward_flop_count_matches_what_the_model_multiplies(frames, monkeypatch):
    """Linear layers as torch's FlopCounterMode counts them, attention as the (query, key) pairs
    the mask lets through, counted at every scaled_dot_product_attention call."""
    # No caption dropout: a dropped caption attends to one null key, which the count cannot know.
    cfg = model_config("tiny", latent_channels=4, text_drop_prob=0.0)
    model = VideoMAR(cfg).train()
    attention = []
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(q, k, v, attn_mask=None, **kwargs):
        b, h, sq, d = q.shape
        pairs = b * h * sq * k.shape[-2] if attn_mask is None else int(attn_mask.expand(b, h, sq, k.shape[-2]).sum())
        attention.append(4 * d * pairs)  # q.k and p.v: two multiply-adds per pair and channel
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    latents = torch.randn(2, 4, frames, 4, 6)  # 24 tokens per frame
    text = model.tokenize(["same length 1", "same length 2"])  # no padding: every text key is real
    with FlopCounterMode(display=False) as counter:
        model.training_loss(latents, text, target_frames=torch.full((2,), frames - 1))
    measured = counter.get_total_flops() + sum(attention)
    assert forward_flops(cfg, StepShape(2, frames, 24, text.mask.shape[1])) == measured


def test_a_training_step_is_three_forward_passes_and_mfu_divides_by_the_peak():
    cfg = model_config("base")
    shape = StepShape(batch=8, frames=2, tokens_per_frame=1024, text_len=48)
    assert train_step_flops(cfg, shape) == 3 * forward_flops(cfg, shape)
    assert mfu(989.4e12, 1.0, 989.4e12) == pytest.approx(1.0)
    assert mfu(1e12, 1.0, None) is None


def test_bf16_peaks_are_matched_by_device_name():
    assert bf16_peak("NVIDIA H200") == 989.4e12
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756.0e12
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312.0e12
    assert bf16_peak("Some Future GPU") is None


def test_the_report_is_one_json_object_with_every_part_and_a_verdict():
    parts = {
        "train_large": {"status": "ok", "mfu": 0.31, "loss_finite": True, "loss_falling": True},
        "sampler": {"status": "ok", "speedup_vs_paper": 5.0, "agree": True, "finite": True},
        "precompute": {"status": "skipped", "reason": "ray is not usable here"},
        "serve": {"status": "failed", "error": "RuntimeError: boom"},
    }
    report = json.loads(json.dumps(gpu.build_report({"device": "NVIDIA H200", "date": "d"}, parts)))
    assert report["parts"] == parts and report["device"] == "NVIDIA H200"
    assert report["statuses"] == {"train_large": "ok", "sampler": "ok", "precompute": "skipped", "serve": "failed"}
    assert report["passed"] is False
    assert report["targets"]["large_mfu_met"] is False and report["targets"]["sampler_speedup_met"] is True
    del parts["serve"]
    assert gpu.build_report({}, parts)["passed"] is True  # a skipped part is not a failure


def test_a_part_whose_check_fails_is_reported_failed_and_a_broken_one_with_its_error():
    figures = {"loss_finite": True, "loss_falling": False}
    result = gpu.run_part("train_base", lambda: figures, ())
    assert result["status"] == "failed" and "loss_falling" in result["error"]

    def broken():
        raise ValueError("no luck")

    assert gpu.run_part("sampler", broken, ())["error"] == "ValueError: no luck"
    skipped = gpu.run_part("serve", broken, ("a_module_that_is_not_installed",))
    assert skipped["status"] == "skipped" and "a_module_that_is_not_installed" in skipped["reason"]


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "bench.gpu"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [gpu.NO_CUDA]


def test_unknown_parts_are_refused_by_name():
    with pytest.raises(SystemExit):
        gpu.main(["--parts", "train_base,warp_drive"])
