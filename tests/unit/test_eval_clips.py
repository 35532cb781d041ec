"""Per-clip eval figures and how they combine: batches split any way give the same metrics, and
a perfect continuation scores perfectly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from videomar.platform.evaluation.clips import (
    CONTINUATION_KEYS, clip_quality, combine_losses, combine_quality, continuation_quality, motion_key,
)
from videomar.platform.evaluation.digits import load_digit_classifier
from videomar.platform.evaluation.features import BuiltinExtractor
from videomar.platform.evaluation.metrics import PSNR_CAP_DB

pytestmark = pytest.mark.timeout(90)

FRAMES, SIZE, SPRITE = 5, 32, 14


def digit_videos(count: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """([count, 3, FRAMES, SIZE, SIZE]: one bundled digit per video drifting right, in [-1, 1];
    captions naming the digit as the sample videos' do)."""
    d = load_digits()
    rng = np.random.default_rng(seed)
    videos, captions = [], []
    for _ in range(count):
        index = rng.integers(len(d.images))
        captions.append(f"a handwritten {d.target[index]} moving right")
        img = torch.from_numpy(d.images[index]).float() / 16
        sprite = F.interpolate(img[None, None], size=(SPRITE, SPRITE), mode="bilinear", align_corners=False)[0, 0]
        y, x, step = int(rng.integers(0, 8)), int(rng.integers(0, 6)), int(rng.integers(1, 3))
        frames = torch.zeros(FRAMES, SIZE, SIZE)
        for t in range(FRAMES):
            frames[t, y : y + SPRITE, x + step * t : x + step * t + SPRITE] = sprite
        videos.append(frames * 2 - 1)
    return torch.stack(videos)[:, None].expand(-1, 3, -1, -1, -1).contiguous(), captions


@pytest.fixture(scope="module")
def tools():
    return load_digit_classifier(), BuiltinExtractor()  # the default cache: trained once per machine


def stack(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_perfect_continuation_scores_perfectly(tools):
    clf, extractor = tools
    truth, captions = digit_videos(4, seed=0)
    m = combine_quality(clip_quality(truth, truth, truth, 1, clf, extractor, captions))
    assert m["psnr"] == pytest.approx(PSNR_CAP_DB) and m["vae_psnr"] == pytest.approx(PSNR_CAP_DB)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["psnr_copy_last"] < m["psnr"] and m["ssim_copy_last"] < 1.0  # the digits move
    assert m["digit_consistency"] == m["digit_consistency_gt"] > 0.5
    assert m["dynamics"] == pytest.approx(m["dynamics_gt"]) and m["dynamics"] > 0
    assert m["fvd"] == pytest.approx(0.0, abs=1e-6)
    assert m["classifier_accuracy_gt"] >= 0.9


def test_classifier_accuracy_counts_only_single_digit_captions(tools):
    clf, extractor = tools
    truth, captions = digit_videos(2, seed=3)
    label = int(captions[0].split()[2])
    wrong = f"a handwritten {(label + 1) % 10} moving right"
    rows = clip_quality(truth, truth, truth, 1, clf, extractor, [wrong, "a handwritten 1 and a handwritten 2"])
    assert rows["label_frames_gt"].tolist() == [FRAMES, 0]  # the two-digit clip is not judged
    assert combine_quality(rows)["classifier_accuracy_gt"] == 0.0
    uncaptioned = clip_quality(truth, truth, truth, 1, clf, extractor, ["", ""])
    assert np.isnan(combine_quality(uncaptioned)["classifier_accuracy_gt"])


def test_frozen_or_noisy_continuations_score_worse(tools):
    clf, extractor = tools
    truth, captions = digit_videos(4, seed=1)
    frozen = truth[:, :, :1].expand_as(truth).contiguous()
    gen = torch.Generator().manual_seed(0)
    noisy = (truth + 0.6 * torch.randn(truth.shape, generator=gen)).clamp(-1, 1)
    m_frozen = combine_quality(clip_quality(frozen, truth, truth, 1, clf, extractor, captions))
    m_noisy = combine_quality(clip_quality(noisy, truth, truth, 1, clf, extractor, captions))
    assert m_frozen["psnr"] == pytest.approx(m_frozen["psnr_copy_last"])  # frozen is the baseline
    assert m_frozen["dynamics"] == 0.0 < m_frozen["dynamics_gt"]
    assert m_noisy["psnr"] < 15 and m_noisy["fvd"] > 0
    assert m_noisy["dynamics"] > m_noisy["dynamics_gt"]


def test_batches_combine_to_the_metrics_of_one_batch(tools):
    clf, extractor = tools
    truth, captions = digit_videos(6, seed=2)
    gen = torch.Generator().manual_seed(1)
    generated = (truth + 0.2 * torch.randn(truth.shape, generator=gen)).clamp(-1, 1)
    whole = combine_quality(clip_quality(generated, truth, truth, 1, clf, extractor, captions))
    parts = [clip_quality(generated[s], truth[s], truth[s], 1, clf, extractor, captions[s])
             for s in (slice(0, 2), slice(2, 6))]
    split = combine_quality(stack(parts))
    for key, value in whole.items():
        assert split[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_losses_combine_per_frame_index():
    losses = np.array([[1.0, 3.0], [2.0, 5.0]])
    mean, by_frame = combine_losses(losses)
    assert by_frame == {"1": 1.5, "2": 4.0}
    assert mean == pytest.approx(2.75)


def test_motion_figures_include_the_change_from_the_last_condition_frame(tools):
    """From two condition frames: a frozen continuation has no dynamics, the truth its own, and
    combine_quality names them dynamics_2cond and dynamics_gt_2cond."""
    clf, extractor = tools
    truth, captions = digit_videos(4, seed=4)
    frozen = torch.cat([truth[:, :, :2], truth[:, :, 1:2].expand(-1, -1, FRAMES - 2, -1, -1)], dim=2)
    rows = clip_quality(frozen, truth, truth, 1, clf, extractor, captions)
    assert combine_quality(rows)["dynamics"] > 0  # from one condition frame, the frozen video moves once
    for video, moves in ((frozen, False), (truth, True)):
        rows.update({motion_key(k, 2): v.numpy() for k, v in continuation_quality(video, truth, 2).items()})
        m = combine_quality(rows, 2)
        assert set(motion_key(k, 2) for k in CONTINUATION_KEYS) <= set(m)
        assert m["dynamics_gt_2cond"] > 0
        assert m["dynamics_2cond"] == (pytest.approx(m["dynamics_gt_2cond"]) if moves else 0.0)
