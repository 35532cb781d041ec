"""Measures of one batch of held-out clips, and how per-clip results combine into metrics.

Pure torch, no Ray: the Ray Data workers in ``workers.py`` call these on each batch, and the
driver combines what they return with ``combine_losses`` and ``combine_quality``. Every per-clip
figure is a sum or a mean over frames of equal-length clips, so combining batches in any order or
split gives the same metrics as one big batch.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from videomar.model.rng import SEED_STRIDE
from videomar.model.sampler import generate, progressive_temperature
from videomar.platform.evaluation import consistency
from videomar.platform.evaluation import digits as digit_measures
from videomar.platform.evaluation.frechet import frechet_distance_features
from videomar.platform.evaluation.metrics import copy_last, psnr, ssim
from videomar.platform.specs.eval import EvalOptions

# Per-clip means whose average over clips is the metric of the same name.
MEAN_KEYS = ("psnr", "psnr_copy_last", "ssim", "ssim_copy_last", "vae_psnr", "vae_ssim", "dynamics", "dynamics_gt")
# Continuation figures: against the ground truth with the copy-last baseline beside each, and the
# frame-to-frame change beside the ground truth's (motion from two frames shows in the latter).
CONTINUATION_KEYS = ("psnr", "psnr_copy_last", "ssim", "ssim_copy_last", "dynamics", "dynamics_gt")


def motion_key(name: str, cond_frames: int) -> str:
    """The name of a ``CONTINUATION_KEYS`` figure measured with ``cond_frames`` latent frames given,
    e.g. ``psnr_2cond``."""
    return f"{name}_{cond_frames}cond"


def batch_seed(seed: int, keys: list[str]) -> int:
    """A seed for one batch from the clips it holds (``keys``: one string per clip), so results do
    not depend on which worker runs it or in what order batches come."""
    return (seed * SEED_STRIDE + zlib.crc32("\n".join(keys).encode())) % (2**63)


@torch.no_grad()
def clip_losses(model, latents: torch.Tensor, captions: list[str], seed: int) -> torch.Tensor:
    """Teacher-forced loss of every clip for every target latent frame k in [1, T'-1].

    latents [B, C, T', H', W'] (scaled, on the model's device) -> [B, T'-1]. Each k reuses the
    same seed, so all k see the same masks and timesteps and the curve over k shows the position
    in the clip, not sampling noise.
    """
    b, frames = latents.shape[0], latents.shape[2]
    if frames < 2:
        raise ValueError(f"clips have {frames} latent frame(s); the next-frame loss needs at least 2")
    text = model.tokenize(captions)
    out = []
    for k in range(1, frames):
        gen = torch.Generator(device=latents.device).manual_seed(seed)
        target = torch.full((b,), k, dtype=torch.long, device=latents.device)
        out.append(model.loss_per_sample(latents, text, generator=gen, target_frames=target).float().cpu())
    return torch.stack(out, dim=1)


@torch.no_grad()
def continue_clips(model, vae, latents: torch.Tensor, captions: list[str], scale: float, options: EvalOptions,
                   keys: list[str], cond_frames: int) -> torch.Tensor:
    """Continue each clip from its first ``cond_frames`` latent frames with the KV-cached
    sampler, each with its own random stream seeded from its key (so a clip's continuation does
    not depend on its batch). latents [B, C, T', H', W'] (scaled) -> decoded pixels
    [B, 3, T, H, W] in [-1, 1], the condition frames included."""
    frames = latents.shape[2]
    if not 0 < cond_frames < frames:
        raise ValueError(f"cond_frames={cond_frames} must be in [1, {frames - 1}] for clips of {frames} latent frames")
    temperature = progressive_temperature if options.temperature is None else options.temperature
    gen = [torch.Generator(device=latents.device).manual_seed(batch_seed(options.seed, [k])) for k in keys]
    out = generate(model, latents[:, :, :cond_frames], model.tokenize(captions),
                   frames=frames - cond_frames, steps=options.steps, cfg=options.cfg,
                   temperature=temperature, generator=gen)
    return vae.decode(out / scale).float().clamp(-1, 1).cpu()


def continuation_quality(generated: torch.Tensor, truth: torch.Tensor, cond_pixels: int) -> dict[str, torch.Tensor]:
    """The ``CONTINUATION_KEYS`` per clip [B] of ``generated`` against ``truth`` (each
    [B, 3, T, H, W]) after the first ``cond_pixels`` frames (the condition, whose last frame the
    copy-last baseline repeats); dynamics from the last condition frame on."""
    pred, target = generated[:, :, cond_pixels:], truth[:, :, cond_pixels:]
    baseline = copy_last(truth[:, :, :cond_pixels], target.shape[2])
    return {
        "psnr": psnr(pred, target).mean(dim=1),
        "psnr_copy_last": psnr(baseline, target).mean(dim=1),
        "ssim": ssim(pred, target).mean(dim=1),
        "ssim_copy_last": ssim(baseline, target).mean(dim=1),
        "dynamics": consistency.dynamics_per_video(generated, cond_pixels - 1),
        "dynamics_gt": consistency.dynamics_per_video(truth, cond_pixels - 1),
    }


def classifier_counts(seen_gt: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip: (frames in which the classifier sees exactly the captioned digit, frames judged)
    [B] each. Only clips whose caption names one digit are judged; ``seen_gt`` [B, T, 10]."""
    labels = [digit_measures.caption_digits(c) for c in captions]
    single = torch.tensor([len(d) == 1 for d in labels])  # [B]
    expected = torch.zeros(len(labels), digit_measures.NUM_CLASSES, dtype=torch.bool)
    for i, digits in enumerate(labels):
        if len(digits) == 1:
            expected[i, digits[0]] = True
    right = (seen_gt == expected[:, None]).all(dim=2).sum(dim=1)  # [B]
    frames = torch.full_like(right, seen_gt.shape[1])
    return right * single, frames * single


def clip_quality(generated: torch.Tensor, recon: torch.Tensor, truth: torch.Tensor, cond_pixels: int, clf,
                 extractor, captions: list[str]) -> dict[str, np.ndarray]:
    """Per-clip figures of continuations ``generated``, VAE reconstructions ``recon`` and the
    ground truth ``truth`` (each [B, 3, T, H, W]); the first ``cond_pixels`` pixel frames are the
    condition and are not scored (the copy-last baseline repeats the last of them).

    Returns arrays with B rows: the ``MEAN_KEYS`` means, digit-consistency counts (``hits``,
    ``hits_gt`` out of ``pairs``), the classifier's right frames of single-digit clips
    (``label_hits_gt`` out of ``label_frames_gt``) and FVD features ``features``/``features_gt`` [B, D].
    """
    seen_gen = digit_measures.digits_in_videos(clf, generated)  # [B, T, 10]
    seen_gt = digit_measures.digits_in_videos(clf, truth)
    subjects = seen_gt[:, :cond_pixels].any(dim=1)  # [B, 10]: the digits the condition shows
    hits, pairs = consistency.consistency_counts(seen_gen, cond_pixels, subjects)
    hits_gt, _ = consistency.consistency_counts(seen_gt, cond_pixels, subjects)
    label_hits, label_frames = classifier_counts(seen_gt, captions)
    out = {
        **continuation_quality(generated, truth, cond_pixels),
        "vae_psnr": psnr(recon, truth).mean(dim=1),
        "vae_ssim": ssim(recon, truth).mean(dim=1),
        "hits": hits,
        "hits_gt": hits_gt,
        "pairs": pairs,
        "label_hits_gt": label_hits,
        "label_frames_gt": label_frames,
        "features": extractor(generated),
        "features_gt": extractor(truth),
    }
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def combine_losses(losses: np.ndarray) -> tuple[float, dict[str, float]]:
    """[N, T'-1] per-clip losses -> (mean over k of the per-k means, {"k": mean over clips})."""
    by_frame = {str(k + 1): float(v) for k, v in enumerate(losses.mean(axis=0))}
    return float(losses.mean()), by_frame


def _ratio(hits: np.ndarray, total: np.ndarray) -> float:
    total = float(np.sum(total))
    return float(np.sum(hits)) / total if total else float("nan")


def combine_quality(rows: dict[str, np.ndarray], motion_cond_frames: int | None = None) -> dict[str, float]:
    """Per-clip arrays (stacked over all batches) -> the quality metrics; the ``motion_key``
    figures of ``motion_cond_frames`` too when the rows hold them."""
    motion = [motion_key(k, motion_cond_frames) for k in CONTINUATION_KEYS] if motion_cond_frames else []
    out = {k: float(np.mean(rows[k])) for k in (*MEAN_KEYS, *motion) if k in rows}
    out["digit_consistency"] = _ratio(rows["hits"], rows["pairs"])
    out["digit_consistency_gt"] = _ratio(rows["hits_gt"], rows["pairs"])
    out["classifier_accuracy_gt"] = _ratio(rows["label_hits_gt"], rows["label_frames_gt"])
    nan = float("nan")
    feats, feats_gt = torch.from_numpy(rows["features"]), torch.from_numpy(rows["features_gt"])
    out["fvd"] = frechet_distance_features(feats, feats_gt) if feats.shape[0] >= 2 else nan
    return out

