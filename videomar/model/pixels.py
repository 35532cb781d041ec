"""Model pixels: floats in [-1, 1], what every VAE takes and gives. The range and the PSNR on it,
defined once for the VAE trainer and the evaluation."""

from __future__ import annotations

import torch

PIXEL_RANGE = 2.0  # peak to peak, for PSNR = 10 log10(range^2 / MSE)


def psnr_db(mse: torch.Tensor, data_range: float = PIXEL_RANGE) -> torch.Tensor:
    """PSNR in dB of mean squared errors (any shape) of pixels spanning ``data_range``."""
    return 10 * torch.log10(data_range**2 / mse)
