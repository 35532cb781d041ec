"""The Fréchet distance between two sets of features (the distance behind FID and FVD).

Each set is summarised by a Gaussian (mean, covariance); the distance between N(mu1, S1) and
N(mu2, S2) is ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``.

The trace of the matrix square root is computed without scipy: ``S1 S2`` is similar to the
symmetric positive semi-definite ``A = S1^(1/2) S2 S1^(1/2)``, so ``tr((S1 S2)^(1/2))`` is the sum
of the square roots of A's eigenvalues, which ``torch.linalg.eigvalsh`` gives stably in float64.
The tests check it against ``scipy.linalg.sqrtm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureStats:
    """Mean ``[D]`` and covariance ``[D, D]`` of a feature set, in float64."""

    mean: torch.Tensor
    cov: torch.Tensor
    count: int


def feature_stats(features: torch.Tensor) -> FeatureStats:
    """``[N, D]`` features (N >= 2) -> their mean and unbiased covariance."""
    if features.dim() != 2:
        raise ValueError(f"features must be [N, D]; got shape {tuple(features.shape)}")
    n = features.shape[0]
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors; got {n}")
    x = features.detach().double().cpu()
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (n - 1)
    return FeatureStats(mean=mean, cov=cov, count=n)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The square root of a symmetric positive semi-definite matrix."""
    vals, vecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance between the Gaussians summarising two feature sets (>= 0)."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.numel()} vs {b.mean.numel()}")
    root_a = _psd_sqrt(a.cov)
    middle = root_a @ b.cov @ root_a
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    trace_cross = eig.sqrt().sum()
    dist = (a.mean - b.mean).pow(2).sum() + a.cov.trace() + b.cov.trace() - 2 * trace_cross
    return max(float(dist), 0.0)


def frechet_distance_features(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Fréchet distance between feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(feature_stats(x), feature_stats(y))
