"""The eval job's Ray Data workers: an actor pool over the held-out clips, each actor holding the
export (model and VAE) on its device.

``LossWorker`` gives each clip's teacher-forced loss per target frame; ``QualityWorker`` decodes
each clip's ground-truth pixels from its source video, continues it with the KV-cached sampler
and returns per-clip figures (see ``clips.clip_quality``). The driver stacks what the actors
return and combines it into metrics, so the same job runs on one CPU or many GPUs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from videomar.platform.evaluation.clips import batch_seed, clip_losses, clip_quality, continue_clips
from videomar.platform.specs.eval import EvalOptions

Bucket = tuple[int, int, int]  # pixel (frames, height, width)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def clip_keys(batch: dict[str, np.ndarray]) -> list[str]:
    return [f"{s}#{i}" for s, i in zip(batch["source"], batch["clip_index"])]


class _ExportWorker:
    def __init__(self, export_uri: str, options: dict[str, Any]):
        from videomar.artifacts.export import load_export

        self.options = EvalOptions.model_validate(options)
        self.export = load_export(export_uri, device=device())
        self.device = next(self.export.model.parameters()).device

    def latents(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Scaled posterior means [B, C, T', H', W'] on the worker's device."""
        mean = torch.as_tensor(np.ascontiguousarray(batch["mean"]), dtype=torch.float32)
        return mean.to(self.device) * self.export.latent_scale


class LossWorker(_ExportWorker):
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seed = batch_seed(self.options.seed, clip_keys(batch))
        losses = clip_losses(self.export.model, self.latents(batch), [str(c) for c in batch["caption"]], seed)
        return {"loss": losses.numpy()}


class QualityWorker(_ExportWorker):
    def __init__(self, export_uri: str, options: dict[str, Any], bucket: Bucket):
        super().__init__(export_uri, options)
        from videomar.platform.evaluation.digits import load_digit_classifier
        from videomar.platform.evaluation.features import load_feature_extractor

        if self.export.vae is None:
            raise ValueError(f"export {export_uri} holds no VAE (vae/); pixel metrics need one")
        self.bucket = bucket
        self.clf = load_digit_classifier(self.options.digit_classifier)
        f = self.options.features
        self.extractor = load_feature_extractor(f.extractor, f.size, f.call_kwargs)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vae = self.export.vae
        latents = self.latents(batch)
        captions = [str(c) for c in batch["caption"]]
        generated = continue_clips(self.export.model, vae, latents, captions, self.export.latent_scale,
                                   self.options, clip_keys(batch))
        recon = vae.decode(latents / self.export.latent_scale).float().clamp(-1, 1).cpu()
        truth = ground_truth_pixels(batch, self.bucket)
        cond_pixels = 1 + (self.options.cond_frames - 1) * vae.temporal_compression
        out = clip_quality(generated, recon, truth, cond_pixels, self.clf, self.extractor)
        out["feature_extractor"] = np.array([self.extractor.name] * len(captions))
        return out


def ground_truth_pixels(batch: dict[str, np.ndarray], bucket: Bucket) -> torch.Tensor:
    """The source pixels of each clip in the batch, decoded, resized and cropped exactly as the
    precompute did before encoding: [B, 3, T, H, W] in [-1, 1]. Uses the rows' ``start_frame``
    and ``stride`` when the dataset stores them."""
    from videomar.data_pipelines.clips import read_clip

    n = len(batch["source"])
    starts = batch.get("start_frame", [None] * n)
    strides = batch.get("stride", [1] * n)
    clips = [
        read_clip(str(source), int(index), bucket, stride=int(stride), start=None if start is None else int(start))
        for source, index, start, stride in zip(batch["source"], batch["clip_index"], starts, strides)
    ]
    return torch.stack([torch.from_numpy(c) for c in clips])


def run_pool(dataset, worker: type, args: tuple, options: EvalOptions) -> dict[str, np.ndarray]:
    """Map ``worker`` over ``dataset`` on an actor pool of ``options.workers`` actors (each with
    ``options.gpus_per_worker`` GPUs); its output columns stacked over all clips."""
    import ray.data

    out = dataset.map_batches(
        worker, fn_constructor_args=args, batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_gpus=options.gpus_per_worker or None, num_cpus=options.cpus_per_worker,
    )
    rows = out.take_all()
    if not rows:
        return {}
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}
