"""DDPM with a cosine schedule, epsilon or v prediction and a learned variance range (improved
DDPM): the training loss (MSE + VLB) and respaced ancestral sampling with a temperature.

The schedule lives here, out of the network; the head (diffloss.py) owns one instance for
training and one respaced instance for sampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch

COSINE_OFFSET = 0.008  # the s of improved DDPM's cosine schedule: avoids tiny betas near t = 0
MAX_BETA = 0.999


def cosine_betas(steps: int) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), MAX_BETA) for i in range(steps)])


def spaced_timesteps(train_steps: int, sample_steps: int) -> np.ndarray:
    """`sample_steps` timesteps spread evenly over [0, train_steps - 1], both ends included."""
    if sample_steps == 1:
        return np.array([train_steps - 1])
    stride = (train_steps - 1) / (sample_steps - 1)
    return np.unique(np.round(np.arange(sample_steps) * stride).astype(np.int64))


class GaussianDiffusion:
    """Schedule arrays (float64) and the math on them. `timestep_map` maps this (possibly
    respaced) schedule's indices to the training timesteps the network was conditioned on."""

    def __init__(self, betas: np.ndarray, timestep_map: np.ndarray | None = None, prediction: str = "epsilon"):
        self.betas = betas
        self.prediction = prediction
        self.steps = len(betas)
        self.timestep_map = np.arange(self.steps) if timestep_map is None else timestep_map
        ac = np.cumprod(1.0 - betas)
        ac_prev = np.append(1.0, ac[:-1])
        self.sqrt_ac = np.sqrt(ac)
        self.sqrt_one_minus_ac = np.sqrt(1.0 - ac)
        self.sqrt_recip_ac = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_ac = np.sqrt(1.0 / ac - 1)
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        # Variance is 0 at t = 0: clip its log to the next value, as improved DDPM does.
        self.post_log_var = np.log(np.append(post_var[1], post_var[1:]))
        self.log_betas = np.log(betas)
        self.post_coef1 = betas * np.sqrt(ac_prev) / (1.0 - ac)
        self.post_coef2 = (1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac)
        self._on_device: dict[tuple[int, torch.device], torch.Tensor] = {}  # (id(array), device) -> tensor

    @classmethod
    def cosine(cls, train_steps: int, sample_steps: int | None = None, prediction: str = "epsilon") -> "GaussianDiffusion":
        betas = cosine_betas(train_steps)
        if sample_steps is None or sample_steps == train_steps:
            return cls(betas, prediction=prediction)
        keep = spaced_timesteps(train_steps, sample_steps)
        ac = np.cumprod(1.0 - betas)[keep]
        new_betas = 1.0 - ac / np.append(1.0, ac[:-1])
        return cls(new_betas, keep, prediction)

    # -- indexing helpers: t is a [n] long tensor; arrays become [n, 1] on t's device
    def _at(self, arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # Each schedule array is copied to a device once: a copy per call would be a blocking
        # host-to-device transfer at every step of every sampling chain (six per step on a GPU).
        key = (id(arr), like.device)
        vals = self._on_device.get(key)
        if vals is None:
            vals = self._on_device[key] = torch.from_numpy(arr).to(device=like.device, dtype=torch.float32)
        return vals[t].to(like.dtype)[:, None]

    def q_sample(self, x0, t, noise):
        return self._at(self.sqrt_ac, t, x0) * x0 + self._at(self.sqrt_one_minus_ac, t, x0) * noise

    def q_posterior(self, x0, xt, t):
        mean = self._at(self.post_coef1, t, x0) * x0 + self._at(self.post_coef2, t, x0) * xt
        return mean, self._at(self.post_log_var, t, x0)

    def predicted_x0(self, pred, xt, t):
        """x0 from the network's prediction (epsilon or v, per `prediction`) at x_t."""
        if self.prediction == "v":
            return self._at(self.sqrt_ac, t, xt) * xt - self._at(self.sqrt_one_minus_ac, t, xt) * pred
        return self._at(self.sqrt_recip_ac, t, xt) * xt - self._at(self.sqrt_recipm1_ac, t, xt) * pred

    def p_mean_logvar(self, pred, var_value, xt, t, x0_clip: float | None = None):
        """The reverse step's mean and log variance from the network's (prediction, variance
        value in [-1, 1]). x0_clip keeps the predicted x0 within [-x0_clip, x0_clip] (improved
        DDPM's clip_denoised with the data's range); None leaves it as predicted."""
        frac = (var_value + 1) / 2
        log_var = frac * self._at(self.log_betas, t, xt) + (1 - frac) * self._at(self.post_log_var, t, xt)
        x0 = self.predicted_x0(pred, xt, t)
        if x0_clip is not None:
            x0 = x0.clamp(-x0_clip, x0_clip)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, log_var

    def training_losses(self, net, x0, z, generator=None):
        """Per-row loss [n]: MSE on the prediction (epsilon or v) + the VLB term (bits) that
        trains the variance. net(x_t [n, c], t [n], z [n, D]) -> [n, 2c]."""
        n = x0.shape[0]
        t = torch.randint(0, self.steps, (n,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        xt = self.q_sample(x0, t, noise)
        pred, var_value = net(xt, t, z).chunk(2, dim=-1)
        target = noise
        if self.prediction == "v":
            target = self._at(self.sqrt_ac, t, x0) * noise - self._at(self.sqrt_one_minus_ac, t, x0) * x0
        mse = ((target - pred) ** 2).mean(-1)
        # The VLB trains only the variance: the mean comes from a detached prediction.
        mean, log_var = self.p_mean_logvar(pred.detach(), var_value, xt, t)
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        kl = _normal_kl(true_mean, true_log_var, mean, log_var).mean(-1) / math.log(2.0)
        nll = -_discretized_gaussian_loglik(x0, mean, 0.5 * log_var).mean(-1) / math.log(2.0)
        return mse + torch.where(t == 0, nll, kl)


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _discretized_gaussian_loglik(x, mean, log_scale):
    """Log-likelihood of x under a Gaussian discretised to 8-bit bins (improved DDPM's decoder term)."""
    bin_half = 1.0 / 255.0
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (x - mean + bin_half))
    cdf_min = _std_normal_cdf(inv_std * (x - mean - bin_half))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
