"""Moving-digits measures read side by side with the ground truth's:

- subject consistency: the fraction of generated frames in which the conditioning digit is still
  recognised by the digit classifier (digits.py; 1.0 = the digit never changes identity or fades);
- dynamics: the mean absolute change between consecutive frames, in units of the pixel range
  (0 = a frozen video).
"""

from __future__ import annotations

import torch

from videomar.platform.evaluation.metrics import DATA_RANGE


def consistency_counts(present: torch.Tensor, cond_frames: int, subjects: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video: (hits, pairs) [B] each, where pairs counts (subject digit, later frame) pairs and
    hits those in which the digit is recognised. See ``subject_consistency``."""
    if not 0 < cond_frames < present.shape[1]:
        raise ValueError(f"cond_frames={cond_frames} must be in [1, {present.shape[1] - 1}] for {present.shape[1]} frames")
    subjects = present[:, :cond_frames].any(dim=1) if subjects is None else subjects.bool()  # [B, 10]
    later = present[:, cond_frames:]  # [B, T - cond, 10]
    hits = (later & subjects[:, None]).sum(dim=(1, 2))
    return hits, subjects.sum(dim=1) * later.shape[1]


def subject_consistency(present: torch.Tensor, cond_frames: int, subjects: torch.Tensor | None = None) -> float:
    """Fraction of (subject digit, later frame) pairs in which the digit is still recognised.

    ``present`` [B, T, 10] from ``digits_in_videos``; the first ``cond_frames`` frames are the
    condition, the rest are judged. ``subjects`` [B, 10] bool: the digits each video is about
    (default: those recognised in any of its conditioning frames). NaN when no video has a subject.
    """
    hits, pairs = consistency_counts(present, cond_frames, subjects)
    total = int(pairs.sum())
    return float(hits.sum()) / total if total else float("nan")


def dynamics_per_video(videos: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Mean absolute change between consecutive frames from frame ``start`` on, as a fraction of
    the pixel range: [B, 3, T, H, W] -> [B] (0 = frozen)."""
    clip = videos[:, :, start:].float()
    if clip.shape[2] < 2:
        raise ValueError(f"dynamics needs at least 2 frames from frame {start}; got {clip.shape[2]}")
    return (clip[:, :, 1:] - clip[:, :, :-1]).abs().flatten(1).mean(dim=1) / DATA_RANGE


def dynamics(videos: torch.Tensor, start: int = 0) -> float:
    """``dynamics_per_video`` averaged over the videos (all of one length)."""
    return float(dynamics_per_video(videos, start).mean())
