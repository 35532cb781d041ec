"""Per-frame PSNR and SSIM of videos, and the copy-the-last-frame baseline.

Videos are tensors ``[B, C, T, H, W]`` with pixels in ``[-1, 1]`` (the VAE's convention), so the
data range is 2. Both metrics are computed frame by frame and return ``[B, T]``; averaging is the
caller's choice. Only torch is needed: the tests check the results against scikit-image's
``peak_signal_noise_ratio`` and ``structural_similarity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from videomar.model.pixels import PIXEL_RANGE, psnr_db

DATA_RANGE = PIXEL_RANGE  # pixels span [-1, 1]
# Identical frames have infinite PSNR; it is reported as this many dB so that averages, JSON and
# MLflow stay finite.
PSNR_CAP_DB = 100.0
# Wang et al. (2004) SSIM: an 11-tap Gaussian window of sigma 1.5, population covariance.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() != 5:
        raise ValueError(f"videos must be [B, C, T, H, W]; got a tensor of shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}"
        )


def _frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] in float64 (accuracy over speed: eval is not hot)."""
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).double()


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio of each frame in dB: ``[B, C, T, H, W]`` x2 -> ``[B, T]``.

    ``10 * log10(data_range**2 / MSE)`` over a frame's channels and pixels, capped at
    ``PSNR_CAP_DB`` for identical frames.
    """
    _check_pair(pred, target)
    b, _, t = pred.shape[:3]
    mse = (_frames(pred) - _frames(target)).pow(2).flatten(1).mean(dim=1)  # [B*T]
    floor = data_range**2 * 10 ** (-PSNR_CAP_DB / 10)
    out = psnr_db(mse.clamp_min(floor), data_range)
    return out.view(b, t).float()


def _gaussian_window(device: torch.device) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()  # [11]


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over H and W with no padding ('valid'), per channel.

    [N, C, H, W] -> [N, C, H-10, W-10]: the border strip that scikit-image crops away is never
    computed.
    """
    c = x.shape[1]
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Structural similarity of each frame: ``[B, C, T, H, W]`` x2 -> ``[B, T]``.

    The Gaussian-window SSIM of Wang et al. (2004), averaged over the valid pixels and then over
    channels; frames must be at least 11x11. Equals scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    channel_axis=...)`` on each frame.
    """
    _check_pair(pred, target)
    b, _, t, h, w = pred.shape
    size = 2 * SSIM_RADIUS + 1
    if min(h, w) < size:
        raise ValueError(f"SSIM needs frames of at least {size}x{size} pixels; got {h}x{w}")
    x, y = _frames(pred), _frames(target)
    window = _gaussian_window(x.device)
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    per_channel = (num / den).flatten(2).mean(dim=2)  # [B*T, C]
    return per_channel.mean(dim=1).view(b, t).float()


def copy_last(context: torch.Tensor, frames: int) -> torch.Tensor:
    """The trivial predictor: repeat the last context frame ``frames`` times.

    ``[B, C, Tc, H, W] -> [B, C, frames, H, W]``. A model's continuation should beat it on
    moving content.
    """
    if context.dim() != 5 or context.shape[2] < 1:
        raise ValueError(f"context must be [B, C, Tc>=1, H, W]; got shape {tuple(context.shape)}")
    if frames < 1:
        raise ValueError(f"frames={frames} must be >= 1")
    return context[:, :, -1:].expand(-1, -1, frames, -1, -1).clone()
