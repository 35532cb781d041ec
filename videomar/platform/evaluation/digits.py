"""The digit classifier of the moving-digits measures (consistency.py): which digits a frame shows.

The sample videos show bright digits on a black canvas.

Frames may show several digits. Ink (pixels brighter than ``INK_THRESHOLD``) is split into
connected regions; each region is cropped to its bounding box, padded to a square and resized to
``NORM_SIZE``, so position and size do not matter. Digits that touch or overlap form one region
and are usually not recognised, which lowers the ground truth's consistency as much as a model's:
read the two side by side.

The classifier (a one-hidden-layer MLP) learns from frames drawn by the sample videos' own
renderer (``sample_data.render``, scikit-learn's bundled ``load_digits``) and shrunk as the
precompute shrinks them, so it sees digits as the evaluation does: bilinear blur, quantisation,
sizes from about 10 pixels up. (A logistic regression on plain upscaled 8x8 digits missed about 1
frame in 20 of single-digit sample videos at 32x32.) It also learns an eleventh class, soft blobs,
and a region classified as one, or whose digit has a probability under ``MIN_CONFIDENCE``, counts
as no digit: a blurry blob is not read as one digit or another by chance. The fitted weights
are cached in an ``.npz`` file, so training (about half a minute) happens once per machine and
prediction needs only torch.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videomar.artifacts.storage import write_bytes_atomic
from videomar.data_pipelines.clips import resize_crop
from videomar.data_pipelines.sample_data import DEFAULT_SIZE, Digit, SampleVideo, digit_images, render


# Side of the square every digit crop is resized to before classifying.
NORM_SIZE = 16
# Brightness (0..1) above which a pixel counts as part of a digit.
INK_THRESHOLD = 0.3
# Connected ink regions smaller than this many pixels are speckles, not digits.
MIN_INK_PIXELS = 10
# Digit sides, as fractions of the sample videos' canvas, at which training digits are drawn (the
# sample videos draw sides from 0.3 to 0.5 of it).
TRAIN_SIDE_FRACTIONS = (0.3, 0.36, 0.42, 0.5)
# Factors by which training frames are shrunk: 2 takes the 64-px sample videos to the quickstart's 32.
TRAIN_SHRINKS = (1, 2)
# Hidden units of the MLP and its L2 penalty.
HIDDEN_UNITS = 128
L2_PENALTY = 1e-3
# A region counts as a digit only when the classifier gives its digit at least this probability.
MIN_CONFIDENCE = 0.8
# The classifier's extra class: soft blobs (what an undertrained model draws) are no digit. Without
# it the MLP reads a blob as some digit with confidence near 1.
NO_DIGIT = 10
# Blobs drawn for the NO_DIGIT class, each one to three Gaussian lumps.
TRAIN_BLOBS = 1500
# Bumped whenever normalisation or training changes, so stale cache files are not reused.
CLASSIFIER_VERSION = 4
NUM_CLASSES = 10
# How the sample videos' captions name each digit ("a handwritten 3 moving up and left").
CAPTION_DIGIT = re.compile(r"\ba handwritten (\d)\b")


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


def _training_frames(seed: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every ``load_digits`` image drawn once per side in ``TRAIN_SIDE_FRACTIONS`` at a random place
    on a sample-video canvas, then shrunk by each of ``TRAIN_SHRINKS`` the way the precompute
    resizes frames: (per shrink, brightness [N, h, w] in [0, 1]; labels [N])."""
    images, labels = digit_images()
    rng = np.random.default_rng(seed)
    drawn, targets = [], []
    for fraction in TRAIN_SIDE_FRACTIONS:
        side = round(fraction * DEFAULT_SIZE)
        for index, label in enumerate(labels.tolist()):
            x, y = (float(v) for v in rng.integers(0, DEFAULT_SIZE - side + 1, size=2))
            digit = Digit(label=label, image_index=index, size=side, x=x, y=y, vx=0.0, vy=0.0)
            drawn.append(render(SampleVideo("", "", 1, DEFAULT_SIZE, 1, (digit,)))[0])  # [64, 64, 3] uint8
            targets.append(label)
    drawn.extend(_blobs(rng, TRAIN_BLOBS, DEFAULT_SIZE))
    targets.extend([NO_DIGIT] * TRAIN_BLOBS)
    frames = np.stack(drawn)  # [N, 64, 64, 3]
    size = DEFAULT_SIZE
    shrunk = [resize_crop(frames, size // s, size // s)[..., 0] for s in TRAIN_SHRINKS]  # [N, h, w] each
    return [torch.from_numpy(f).float() / 255 for f in shrunk], np.array(targets)


def _blobs(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` frames uint8 [count, size, size, 3], each one to three soft elliptic lumps of
    the sample videos' digit scale."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((count, size, size, 3), np.uint8)
    for frame in out:
        canvas = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.3, 0.7, size=2) * size
            sy, sx = rng.uniform(0.03, 0.12, size=2) * size
            lump = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2) * rng.uniform(0.5, 1.0)
            np.maximum(canvas, lump, out=canvas)
        frame[:] = (canvas * 255).round().astype(np.uint8)[..., None]
    return out


def _training_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features [M, NORM_SIZE**2] and labels [M] of the training frames that show one region
    (a digit whose strokes fall apart under the threshold is left out)."""
    grays, labels = _training_frames(seed)
    feats, targets = [], []
    for gray in grays:
        for frame_feats, label in zip(find_digits(gray), labels.tolist()):
            if frame_feats.shape[0] == 1:
                feats.append(frame_feats[0])
                targets.append(label)
    return torch.stack(feats).numpy(), np.array(targets)


@dataclass(frozen=True)
class DigitClassifier:
    """An MLP on normalised crops: ``weights`` ([F, H], [H, 11]) and ``biases`` ([H], [11]),
    ReLU between the layers; class 10 is ``NO_DIGIT``."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """[K, NORM_SIZE**2] normalised crops -> [K, 11] probabilities of the digits and ``NO_DIGIT``."""
        x = features
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = torch.relu(x)
        return x.softmax(dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """[K, NORM_SIZE**2] normalised crops -> [K] digits, -1 for a blob (``NO_DIGIT``) or where
        no digit reaches ``MIN_CONFIDENCE``."""
        confidence, digit = self.probabilities(features).max(dim=1)
        return torch.where((confidence >= MIN_CONFIDENCE) & (digit != NO_DIGIT), digit, -1)

    @torch.no_grad()
    def present(self, frames: torch.Tensor) -> torch.Tensor:
        """Which digits each frame shows: [N, 3, H, W] pixels in [-1, 1] -> [N, 10] bool."""
        out = torch.zeros(frames.shape[0], NUM_CLASSES, dtype=torch.bool)
        for i, feats in enumerate(find_digits(to_gray(frames).cpu())):
            digits = self.classify(feats) if feats.shape[0] else feats.new_zeros(0, dtype=torch.long)
            out[i, digits[digits >= 0]] = True
        return out

    def save(self, path: Path) -> None:
        """Atomic: readers see either no file or the whole one."""
        buf = io.BytesIO()
        layers = {f"weight{i}": w.numpy() for i, w in enumerate(self.weights)}
        layers.update({f"bias{i}": b.numpy() for i, b in enumerate(self.biases)})
        np.savez(buf, **layers, layers=np.array(len(self.weights)), version=np.array(CLASSIFIER_VERSION))
        write_bytes_atomic(str(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "DigitClassifier | None":
        """The cached classifier, or None if the file is missing, unreadable or of another version."""
        try:
            with np.load(path) as data:
                if int(data["version"]) != CLASSIFIER_VERSION:
                    return None
                n = int(data["layers"])
                return cls(tuple(torch.from_numpy(data[f"weight{i}"]).float() for i in range(n)),
                           tuple(torch.from_numpy(data[f"bias{i}"]).float() for i in range(n)))
        except (OSError, KeyError, ValueError):
            return None


def train_digit_classifier(seed: int = 0) -> DigitClassifier:
    """Fit the classifier on sample-video renders of ``load_digits`` (about half a minute)."""
    from sklearn.neural_network import MLPClassifier

    x, y = _training_set(seed)
    fit = MLPClassifier(hidden_layer_sizes=(HIDDEN_UNITS,), alpha=L2_PENALTY, max_iter=300, random_state=seed).fit(x, y)
    return DigitClassifier(tuple(torch.from_numpy(w).float() for w in fit.coefs_),
                           tuple(torch.from_numpy(b).float() for b in fit.intercepts_))


def load_digit_classifier(cache_path: str | Path | None = None) -> DigitClassifier:
    """The classifier cached at ``cache_path`` (default under ~/.cache/videomar), trained if absent."""
    path = Path(cache_path) if cache_path else default_cache_path()
    cached = DigitClassifier.load(path)
    if cached is not None:
        return cached
    clf = train_digit_classifier()
    clf.save(path)
    return clf


def caption_digits(caption: str) -> list[int]:
    """The digits a sample video's caption names, in order (empty for other captions)."""
    return [int(d) for d in CAPTION_DIGIT.findall(caption)]


def digits_in_videos(clf: DigitClassifier, videos: torch.Tensor) -> torch.Tensor:
    """Which digits every frame shows: [B, 3, T, H, W] -> [B, T, 10] bool."""
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"videos must be [B, 3, T, H, W]; got shape {tuple(videos.shape)}")
    b, c, t, h, w = videos.shape
    frames = videos.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    return clf.present(frames).view(b, t, NUM_CLASSES)
