"""Moving-digits measures: a digit classifier, subject consistency and dynamics.

The sample videos show bright digits on a black canvas. A small classifier, trained on
scikit-learn's bundled 8x8 digits (``load_digits``), tells which digit a frame shows; from it:

- subject consistency: the fraction of generated frames in which the conditioning digit is still
  recognised (1.0 = the digit never changes identity or fades away);
- dynamics: the mean absolute change between consecutive frames, in units of the pixel range
  (0 = a frozen video).

Both are computed on the ground truth too, so a model's figures can be read against them.

Frames may show several digits. Ink (pixels brighter than ``INK_THRESHOLD``) is split into
connected regions; each region is cropped to its bounding box, padded to a square and resized to
``NORM_SIZE``, so position and size do not matter; training images pass through the same
normalisation after being rendered at several scales. Digits that touch or overlap form one region
and are usually not recognised, which lowers the ground truth's consistency as much as a model's:
read the two side by side. The fitted weights (a multinomial logistic regression) are cached in an
``.npz`` file, so training (a few seconds) happens once per machine and prediction needs only
torch.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videomar.platform.evaluation.metrics import DATA_RANGE

# Side of the square every digit crop is resized to before classifying.
NORM_SIZE = 16
# Brightness (0..1) above which a pixel counts as part of a digit.
INK_THRESHOLD = 0.3
# Connected ink regions smaller than this many pixels are speckles, not digits.
MIN_INK_PIXELS = 10
# Sizes (pixels) at which each 8x8 training digit is rendered, so crops of any scale look alike.
TRAIN_SCALES = (8, 16, 24, 32, 48)
# Bumped whenever normalisation or training changes, so stale cache files are not reused.
CLASSIFIER_VERSION = 2
NUM_CLASSES = 10


def default_cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "videomar" / f"digit-classifier-v{CLASSIFIER_VERSION}.npz"


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] pixels in [-1, 1] -> [N, H, W] brightness in [0, 1]."""
    return ((frames.float().mean(dim=1) + 1) / 2).clamp(0, 1)


def normalise_crop(crop: torch.Tensor) -> torch.Tensor:
    """One digit's region [h, w] in [0, 1] -> features [NORM_SIZE**2]: cropped to the bounding box
    of its ink, padded to a square, resized, scaled to a peak of 1."""
    ink = crop > INK_THRESHOLD
    rows = ink.any(dim=1).nonzero().squeeze(1)
    cols = ink.any(dim=0).nonzero().squeeze(1)
    crop = crop[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    h, w = crop.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = F.pad(crop, (left, side - w - left, top, side - h - top))
    small = F.interpolate(square[None, None], size=(NORM_SIZE, NORM_SIZE), mode="bilinear",
                          align_corners=False, antialias=side > NORM_SIZE)[0, 0]
    return (small / small.max().clamp_min(1e-6)).flatten()


def label_regions(ink: torch.Tensor) -> torch.Tensor:
    """Connected regions of ``ink`` [N, H, W] bool (8-connected, after growing the ink by one pixel
    so that a stroke broken by the threshold stays one digit) -> [N, H, W] region ids, 0 = none.

    Each pixel takes the largest id in its 3x3 neighbourhood until nothing changes.
    """
    n, h, w = ink.shape
    grown = F.max_pool2d(ink[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
    ids = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w).expand(n, h, w)
    labels = torch.where(grown, ids, torch.zeros(()))
    while True:
        spread = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0]
        spread = torch.where(grown, spread, torch.zeros(()))
        if torch.equal(spread, labels):
            return labels.long()
        labels = spread


def find_digits(gray: torch.Tensor) -> list[torch.Tensor]:
    """The digits in each frame: [N, H, W] brightness -> per frame, features [K, NORM_SIZE**2]
    of its K digit regions (K = 0 on a blank frame)."""
    ink = gray > INK_THRESHOLD
    regions = label_regions(ink)
    out = []
    for i in range(gray.shape[0]):
        # Ink pixels per region id; speckles below MIN_INK_PIXELS are dropped before any crop.
        counts = torch.bincount(regions[i][ink[i]], minlength=1)
        ids = (counts >= MIN_INK_PIXELS).nonzero().squeeze(1)
        feats = [normalise_crop(gray[i] * (regions[i] == rid)) for rid in ids.tolist() if rid]
        out.append(torch.stack(feats) if feats else torch.zeros(0, NORM_SIZE * NORM_SIZE))
    return out


def _training_set() -> tuple[torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    feats = []
    for scale in TRAIN_SCALES:
        rendered = F.interpolate(images, size=(scale, scale), mode="bilinear", align_corners=False)
        feats.append(torch.stack([normalise_crop(img) for img in rendered[:, 0]]))
    return torch.cat(feats), np.tile(digits.target, len(TRAIN_SCALES))


@dataclass(frozen=True)
class DigitClassifier:
    """Multinomial logistic regression on normalised crops: ``weight`` [10, F], ``bias`` [10]."""

    weight: torch.Tensor
    bias: torch.Tensor

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[K, NORM_SIZE**2] normalised crops -> [K] digits."""
        return (features @ self.weight.T + self.bias).argmax(dim=1)

    @torch.no_grad()
    def present(self, frames: torch.Tensor) -> torch.Tensor:
        """Which digits each frame shows: [N, 3, H, W] pixels in [-1, 1] -> [N, 10] bool."""
        out = torch.zeros(frames.shape[0], NUM_CLASSES, dtype=torch.bool)
        for i, feats in enumerate(find_digits(to_gray(frames).cpu())):
            if feats.shape[0]:
                out[i, self.classify(feats)] = True
        return out

    def save(self, path: Path) -> None:
        """Atomic: readers see either no file or the whole one."""
        from videomar.artifacts.storage import write_bytes_atomic

        buf = io.BytesIO()
        np.savez(buf, weight=self.weight.numpy(), bias=self.bias.numpy(), version=np.array(CLASSIFIER_VERSION))
        write_bytes_atomic(str(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "DigitClassifier | None":
        """The cached classifier, or None if the file is missing, unreadable or of another version."""
        try:
            with np.load(path) as data:
                if int(data["version"]) != CLASSIFIER_VERSION:
                    return None
                return cls(torch.from_numpy(data["weight"]).float(), torch.from_numpy(data["bias"]).float())
        except (OSError, KeyError, ValueError):
            return None


def train_digit_classifier(seed: int = 0) -> DigitClassifier:
    """Fit the classifier on ``load_digits`` rendered at ``TRAIN_SCALES`` (a few seconds)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _training_set()
    fit = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(x.numpy(), y)
    return DigitClassifier(torch.from_numpy(fit.coef_).float(), torch.from_numpy(fit.intercept_).float())


def load_digit_classifier(cache_path: str | Path | None = None) -> DigitClassifier:
    """The classifier cached at ``cache_path`` (default under ~/.cache/videomar), trained if absent."""
    path = Path(cache_path) if cache_path else default_cache_path()
    cached = DigitClassifier.load(path)
    if cached is not None:
        return cached
    clf = train_digit_classifier()
    clf.save(path)
    return clf


def digits_in_videos(clf: DigitClassifier, videos: torch.Tensor) -> torch.Tensor:
    """Which digits every frame shows: [B, 3, T, H, W] -> [B, T, 10] bool."""
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"videos must be [B, 3, T, H, W]; got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    frames = videos.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    return clf.present(frames).view(b, t, NUM_CLASSES)


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
