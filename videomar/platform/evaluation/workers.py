"""The eval job's Ray Data workers: an actor pool over the held-out clips, each actor holding the
export (model and VAE) on its device.

``LossWorker`` gives each clip's teacher-forced loss per target frame; ``QualityWorker`` decodes
each clip's ground-truth pixels from its source video, continues it with the KV-cached sampler
(from ``cond_frames`` latent frames, and again from ``motion_cond_frames``) and returns per-clip
figures (see ``clips.clip_quality``), plus the frames of the clips picked for the contact sheet.
The driver stacks what the actors return and combines it into metrics, so the same job runs on
one CPU or many GPUs.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from videomar.platform import console
from videomar.platform.evaluation.clips import (
    batch_seed,
    clip_losses,
    clip_quality,
    continuation_quality,
    continue_clips,
    motion_key,
)
from videomar.artifacts.bucket import Bucket
from videomar.platform.specs.base import ResourcesSection
from videomar.platform.specs.eval import EvalOptions
from videomar.errors import ConfigError
from videomar.ray_env import cluster_cpus, gpus_per_worker
from videomar.artifacts.export import load_export
from videomar.artifacts.text_shards import attach_text
from videomar.artifacts.media import to_uint8_frames
from videomar.data_pipelines.clips import read_clip
from videomar.platform.evaluation.digits import load_digit_classifier
from videomar.platform.evaluation.features import load_feature_extractor

BLOCKS_PER_WORKER = 2  # blocks per actor when several share the clips (the last block finishes alone)

# The output column with the contact-sheet frames: for the clips picked for the sheet, uint8
# [2, T, H, W, 3] (generated, ground truth) in .npy bytes; b"" for the others. Bytes, because Ray
# Data cannot put arrays of different shapes in one column across batches.
SHEET_COLUMN = "sheet"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def clip_key(source: str, clip_index: int) -> str:
    """A held-out clip's name: its source video and index, unique in a dataset."""
    return f"{source}#{clip_index}"


def clip_keys(batch: dict[str, np.ndarray]) -> list[str]:
    return [clip_key(s, i) for s, i in zip(batch["source"], batch["clip_index"])]


class _ExportWorker:
    def __init__(self, export_uri: str, options: dict[str, Any]):
        self.options = EvalOptions.model_validate(options)
        self.export = load_export(export_uri, device=device())
        # Precomputed text: the captions' embeddings from the dataset the stage trained on.
        attach_text(self.export.model, self.export.config.get("manifest"), self.export.config.get("text_encoder"))
        self.device = next(self.export.model.parameters()).device

    def latents(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Scaled posterior means [B, C, T', H', W'] on the worker's device."""
        # A writable copy: Ray Data's batches can be read-only views of its blocks, which torch
        # warns about (it cannot honour read-only memory).
        mean = torch.from_numpy(np.array(batch["mean"], dtype=np.float32))
        return mean.to(self.device) * self.export.latent_scale


class LossWorker(_ExportWorker):
    title = "teacher-forced loss"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seed = batch_seed(self.options.seed, clip_keys(batch))
        losses = clip_losses(self.export.model, self.latents(batch), [str(c) for c in batch["caption"]], seed)
        return {"loss": losses.numpy()}


class QualityWorker(_ExportWorker):
    title = "continuations and pixel metrics"

    def __init__(self, export_uri: str, options: dict[str, Any], bucket: Bucket,
                 sheet_keys: tuple[str, ...] | list[str] = ()):
        super().__init__(export_uri, options)

        if self.export.vae is None:
            raise ValueError(f"export {export_uri} holds no VAE (vae/); pixel metrics need one")
        self.bucket = bucket
        self.sheet_keys = set(sheet_keys)
        self.clf = load_digit_classifier(self.options.digit_classifier)
        f = self.options.features
        self.extractor = load_feature_extractor(f.extractor, f.size, f.call_kwargs)

    def cond_pixels(self, cond_frames: int) -> int:
        """Pixel frames that ``cond_frames`` latent frames decode to."""
        return 1 + (cond_frames - 1) * self.export.vae.temporal_compression

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vae, scale = self.export.vae, self.export.latent_scale
        latents = self.latents(batch)
        captions = [str(c) for c in batch["caption"]]
        keys = clip_keys(batch)
        generated = continue_clips(self.export.model, vae, latents, captions, scale, self.options, keys,
                                   self.options.cond_frames)
        recon = vae.decode(latents / scale).float().clamp(-1, 1).cpu()
        truth = ground_truth_pixels(batch, self.bucket)
        cond_pixels = self.cond_pixels(self.options.cond_frames)
        out = clip_quality(generated, recon, truth, cond_pixels, self.clf, self.extractor, captions)
        out.update(self.motion_quality(latents, captions, keys, truth))
        out[SHEET_COLUMN] = self.sheet_frames(keys, generated, truth)
        out["cond_pixels"] = np.full(len(keys), cond_pixels)
        out["key"] = np.array(keys)
        out["source"] = np.array([str(s) for s in batch["source"]])
        out["feature_extractor"] = np.array([self.extractor.name] * len(captions))
        return out

    def motion_quality(self, latents: torch.Tensor, captions: list[str], keys: list[str],
                       truth: torch.Tensor) -> dict[str, np.ndarray]:
        """The ``motion_key`` figures: continuations from ``motion_cond_frames`` latent frames
        (none when unset or when the clips have no latent frame after them)."""
        n = self.options.motion_cond_frames
        if not n or n >= latents.shape[2]:
            return {}
        generated = continue_clips(self.export.model, self.export.vae, latents, captions, self.export.latent_scale,
                                   self.options, keys, n)
        figures = continuation_quality(generated, truth, self.cond_pixels(n))
        return {motion_key(k, n): v.numpy() for k, v in figures.items()}

    def sheet_frames(self, keys: list[str], generated: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
        """The ``SHEET_COLUMN`` of a batch: one entry per clip."""
        out = []
        for i, key in enumerate(keys):
            buf = io.BytesIO()
            if key in self.sheet_keys:
                np.save(buf, np.stack([to_uint8_frames(generated[i]), to_uint8_frames(truth[i])]))
            out.append(buf.getvalue())
        return np.array(out, dtype=object)


def sheet_clips(quality: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(key, frames [2, T, H, W, 3]) of the clips the workers returned frames for, in key order."""
    picked = [(str(k), blob) for k, blob in zip(quality["key"], quality[SHEET_COLUMN]) if len(blob)]
    return [(k, np.load(io.BytesIO(blob))) for k, blob in sorted(picked)]


def ground_truth_pixels(batch: dict[str, np.ndarray], bucket: Bucket) -> torch.Tensor:
    """The source pixels of each clip in the batch, decoded, resized and cropped exactly as the
    precompute did before encoding: [B, 3, T, H, W] in [-1, 1]. Uses the rows' ``start_frame``
    and ``stride`` when the dataset stores them."""
    n = len(batch["source"])
    starts = batch.get("start_frame", [None] * n)
    strides = batch.get("stride", [1] * n)
    clips = [
        read_clip(str(source), int(index), bucket, stride=int(stride), start=None if start is None else int(start))
        for source, index, start, stride in zip(batch["source"], batch["clip_index"], starts, strides)
    ]
    return torch.stack([torch.from_numpy(c) for c in clips])


def run_pool(dataset, worker: type, args: tuple, options: EvalOptions,
             resources: ResourcesSection) -> dict[str, np.ndarray]:
    """Map ``worker`` over ``dataset`` on an actor pool of ``resources.workers`` actors; its output
    columns stacked over all clips."""
    import ray.data

    check_pool(resources)
    if resources.workers > 1:  # actors are handed blocks, not batches: give each some
        dataset = dataset.repartition(resources.workers * BLOCKS_PER_WORKER)
    out = dataset.map_batches(
        worker, fn_constructor_args=args, batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=resources.workers),
        num_gpus=gpus_per_worker(resources.gpus_per_worker) or None, num_cpus=resources.cpus_per_worker,
    )
    rows = []
    with console.phase(f"evaluate: {worker.title}", unit="clips") as row:
        for item in out.iter_rows():
            rows.append(item)
            row.update(len(rows))
    if not rows:
        return {}
    return {key: _column([r[key] for r in rows]) for key in rows[0]}


def check_pool(resources: ResourcesSection) -> None:
    """Refuse actors that would take every CPU of the cluster: Ray Data's read tasks would wait
    for one forever."""
    taken, have = resources.workers * resources.cpus_per_worker, cluster_cpus()
    if taken >= have:
        raise ConfigError(
            f"resources: {resources.workers} workers x cpus_per_worker={resources.cpus_per_worker:g} take all "
            f"{have:g} CPUs of the cluster, and Ray Data's read tasks would wait for one forever; lower "
            f"resources.workers or resources.cpus_per_worker (0.5 lets two actors share a CPU)")


def _column(values: list) -> np.ndarray:
    # Bytes stay Python objects: a fixed-width bytes array would drop their trailing zero bytes.
    return np.array(values, dtype=object) if isinstance(values[0], bytes) else np.stack(values)
