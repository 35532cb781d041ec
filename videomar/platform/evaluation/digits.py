"""Moving-digits measures: a digit classifier, subject consistency and dynamics.

The sample videos show bright digits on a black canvas. A small classifier, trained on
scikit-learn's bundled 8x8 digits (``load_digits``), tells which digit a frame shows; from it:

- subject consistency: the fraction of generated frames in which the conditioning digit is still
  recognised (1.0 = the digit never changes identity or fades away);
- dynamics: the mean absolute change between consecutive frames, in units of the pixel range
  (0 = a frozen video).

Both are computed on the ground truth too, so a model's figures can be read against them.

Position and size are factored out before classifying: a frame's bright pixels are cropped to
their bounding box, padded to a square and resized to ``NORM_SIZE``; training images pass through
the same normalisation after being rendered at several scales. The fitted weights (a multinomial
logistic regression) are cached in an ``.npz`` file, so training (a few seconds) happens once per
machine and prediction needs only torch.
"""

from __future__ import annotations

import os
import tempfile
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
# Sizes (pixels) at which each 8x8 training digit is rendered, so crops of any scale look alike.
TRAIN_SCALES = (8, 16, 24, 32, 48)
# Bumped whenever normalisation or training changes, so stale cache files are not reused.
CLASSIFIER_VERSION = 1
NO_DIGIT = -1


def default_cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "videomar" / f"digit-classifier-v{CLASSIFIER_VERSION}.npz"


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] pixels in [-1, 1] -> [N, H, W] brightness in [0, 1]."""
    return ((frames.float().mean(dim=1) + 1) / 2).clamp(0, 1)


def normalise_crops(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each frame's digit to its bounding box, square it and resize it.

    ``[N, H, W]`` brightness in [0, 1] -> (features ``[N, NORM_SIZE**2]`` scaled to a peak of 1,
    ``found`` ``[N]`` bool: False where no pixel passes ``INK_THRESHOLD``).
    """
    n = gray.shape[0]
    feats = torch.zeros(n, NORM_SIZE * NORM_SIZE)
    found = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        ink = gray[i] > INK_THRESHOLD
        if not bool(ink.any()):
            continue
        rows = ink.any(dim=1).nonzero().squeeze(1)
        cols = ink.any(dim=0).nonzero().squeeze(1)
        crop = gray[i, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
        h, w = crop.shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = F.pad(crop, (left, side - w - left, top, side - h - top))
        small = F.interpolate(square[None, None], size=(NORM_SIZE, NORM_SIZE), mode="bilinear",
                              align_corners=False, antialias=side > NORM_SIZE)[0, 0]
        feats[i] = (small / small.max().clamp_min(1e-6)).flatten()
        found[i] = True
    return feats, found


def _training_set() -> tuple[torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    feats = []
    for scale in TRAIN_SCALES:
        rendered = F.interpolate(images, size=(scale, scale), mode="bilinear", align_corners=False)
        f, found = normalise_crops(rendered[:, 0])
        assert bool(found.all()), "every bundled digit has ink"
        feats.append(f)
    return torch.cat(feats), np.tile(digits.target, len(TRAIN_SCALES))


@dataclass(frozen=True)
class DigitClassifier:
    """Multinomial logistic regression on normalised crops: ``weight`` [10, F], ``bias`` [10]."""

    weight: torch.Tensor
    bias: torch.Tensor

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] pixels in [-1, 1] -> [N] digit (0-9), or NO_DIGIT where nothing is bright."""
        feats, found = normalise_crops(to_gray(frames).cpu())
        labels = (feats @ self.weight.T + self.bias).argmax(dim=1)
        return torch.where(found, labels, torch.full_like(labels, NO_DIGIT))

    def save(self, path: Path) -> None:
        """Atomic: written to a temporary file in the same folder, then renamed into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, weight=self.weight.numpy(), bias=self.bias.numpy(),
                         version=np.array(CLASSIFIER_VERSION))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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


def _video_frames(videos: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] -> [B*T, 3, H, W]."""
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"videos must be [B, 3, T, H, W]; got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    return videos.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def predict_videos(clf: DigitClassifier, videos: torch.Tensor) -> torch.Tensor:
    """The digit seen in every frame: [B, 3, T, H, W] -> [B, T] (NO_DIGIT where none)."""
    b, t = videos.shape[0], videos.shape[2]
    return clf.predict(_video_frames(videos)).view(b, t)


def conditioning_digits(labels: torch.Tensor, cond_frames: int) -> torch.Tensor:
    """The digit of each video's conditioning frames: the most frequent recognised label among them.

    [B, T] per-frame labels -> [B] (NO_DIGIT where no conditioning frame shows a digit).
    """
    cond = labels[:, :cond_frames]
    out = torch.full((labels.shape[0],), NO_DIGIT, dtype=torch.long)
    for i, row in enumerate(cond):
        seen = row[row != NO_DIGIT]
        if seen.numel():
            out[i] = torch.mode(seen).values
    return out


def subject_consistency(labels: torch.Tensor, cond_frames: int, subject: torch.Tensor | None = None) -> float:
    """Fraction of frames after the first ``cond_frames`` whose digit is the conditioning digit.

    ``labels`` [B, T] from ``predict_videos``; ``subject`` [B] the digit each video is about
    (default: recognised in its conditioning frames). Videos whose subject is unknown are left out;
    NaN if none is left.
    """
    if not 0 < cond_frames < labels.shape[1]:
        raise ValueError(f"cond_frames={cond_frames} must be in [1, {labels.shape[1] - 1}] for {labels.shape[1]} frames")
    subject = conditioning_digits(labels, cond_frames) if subject is None else subject
    known = subject != NO_DIGIT
    if not bool(known.any()):
        return float("nan")
    later = labels[known, cond_frames:]
    return float((later == subject[known, None]).float().mean())


def dynamics(videos: torch.Tensor, start: int = 0) -> float:
    """Mean absolute change between consecutive frames from frame ``start`` on, as a fraction of
    the pixel range: [B, 3, T, H, W] -> float (0 = frozen)."""
    clip = videos[:, :, start:].float()
    if clip.shape[2] < 2:
        raise ValueError(f"dynamics needs at least 2 frames from frame {start}; got {clip.shape[2]}")
    return float((clip[:, :, 1:] - clip[:, :, :-1]).abs().mean() / DATA_RANGE)
