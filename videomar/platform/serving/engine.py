"""The generation engine every serving path shares (HTTP, /v1/batches, the ``generate`` job and
``videomar generate``): a loaded stage export, and a function from jobs to videos.

Frames are counted in **pixel frames of the output video, the condition image included as
frame 0**. The model works in latent frames: latent frame 0 is the VAE encoding of the image
alone, and each further latent frame decodes to ``temporal_compression`` pixel frames. A request
for N frames generates ``ceil((N - 1) / temporal_compression)`` latent frames after the image,
decodes them, and keeps the first N pixel frames, so the video has exactly N frames.

Jobs of the same shape (frames, steps, height, width) run as one batched, KV-cached ``generate``
call; each keeps its own cfg, temperature and seed (the sampler takes them per sample, with one
random stream per sample seeded by the job's seed). So the same job gives the same video alone,
twice, bit for bit; and batched with any other jobs it gives the same video up to float rounding
(batched matrix products may round differently from unbatched ones).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from videomar.artifacts.export import attach_prompt_encoder, load_export
from videomar.artifacts.media import DEFAULT_FPS, decode_latents, mp4_bytes, to_uint8_frames
from videomar.model.sampler import generate, progressive_temperature

log = logging.getLogger("ray.serve")  # Serve writes this logger to the replica's log file


@dataclass(frozen=True)
class Job:
    """One video to make. ``image`` is [H, W, 3] uint8; ``temperature`` None means the
    sampler's progressive schedule."""

    image: np.ndarray
    prompt: str
    frames: int  # pixel frames of the output, the image included
    steps: int  # spatial steps per latent frame
    cfg: float
    temperature: float | None
    seed: int
    request_id: str = ""  # names the job in the server log

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(frames, steps, height, width): jobs of equal shape are sampled together in one call."""
        h, w = self.image.shape[:2]
        return (self.frames, self.steps, h, w)


@dataclass(frozen=True)
class ModelInfo:
    """What clients may ask about the loaded export."""

    preset: str | None
    stage: str | None  # the curriculum stage that wrote the export, and its last step
    step: int | None
    trained_bucket: dict[str, int] | None  # pixel frames, height, width the stage trained on
    latent_channels: int
    temporal_compression: int
    spatial_compression: int
    spatial_multiple: int  # image height and width must be multiples of this
    parameters: int


class Engine:
    """A stage export ready to sample: model and VAE in eval mode on one device."""

    def __init__(self, model, vae, config: dict[str, Any]):
        if vae is None:
            raise ValueError("the export has no vae/ directory; serving needs the VAE to encode images "
                             "and decode videos")
        self.model, self.vae, self.config = model, vae, config
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, uri: str, device: str | torch.device | None = None) -> "Engine":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        export = attach_prompt_encoder(load_export(uri, device=device), device)
        return cls(export.model, export.vae, export.config)

    # -- shapes ------------------------------------------------------------------------------
    def latent_frames_to_generate(self, frames: int) -> int:
        """Latent frames after the image needed for ``frames`` pixel frames (image included)."""
        return max(1, math.ceil((frames - 1) / self.vae.temporal_compression))

    @property
    def spatial_multiple(self) -> int:
        return self.vae.spatial_compression * self.model.config.patch_size

    def info(self) -> ModelInfo:
        bucket = self.config.get("bucket")
        return ModelInfo(
            preset=self.config.get("preset"),
            stage=self.config.get("stage"),
            step=self.config.get("step"),
            trained_bucket={k: int(bucket[k]) for k in ("frames", "height", "width")} if bucket else None,
            latent_channels=self.model.config.latent_channels,
            temporal_compression=self.vae.temporal_compression,
            spatial_compression=self.vae.spatial_compression,
            spatial_multiple=self.spatial_multiple,
            parameters=sum(p.numel() for p in self.model.parameters()),
        )

    # -- generation --------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> list[np.ndarray]:
        """Videos [frames, H, W, 3] uint8, one per job, in order; one sampler call per shape."""
        out: list[np.ndarray | None] = [None] * len(jobs)
        for indices in _groups(jobs):
            for i, video in zip(indices, self._run_group([jobs[i] for i in indices])):
                out[i] = video
        return out  # type: ignore[return-value]

    def run_each(self, jobs: list[Job]) -> list[np.ndarray | Exception]:
        """Like ``run``, but a job that fails fails alone: each entry is the job's video or the
        exception that stopped it. A shape group whose sampler call raises is run again one job
        at a time, so its other jobs still get their videos."""
        out: list[np.ndarray | Exception | None] = [None] * len(jobs)
        for indices in _groups(jobs):
            try:
                videos = self._run_group([jobs[i] for i in indices])
            except Exception as err:  # noqa: BLE001 -- whatever broke, the jobs are retried alone
                videos = [err] if len(indices) == 1 else [self._run_alone(jobs[i]) for i in indices]
            for i, video in zip(indices, videos):
                out[i] = video
        return out  # type: ignore[return-value]

    def _run_alone(self, job: Job) -> np.ndarray | Exception:
        try:
            return self._run_group([job])[0]
        except Exception as err:  # noqa: BLE001 -- reported per job by the caller
            return err

    @torch.no_grad()
    def condition(self, images: list[np.ndarray]) -> torch.Tensor:
        """Images [H, W, 3] uint8 (same size) -> scaled latents [B, C, 1, H', W'] (posterior mean:
        the condition is deterministic)."""
        pixels = torch.from_numpy(np.stack(images)).to(self.device)  # [B, H, W, 3]
        pixels = pixels.permute(0, 3, 1, 2)[:, :, None].float() / 127.5 - 1.0  # [B, 3, 1, H, W]
        mean, _ = self.vae.encode(pixels)
        return mean * self.vae.scale

    @torch.no_grad()
    def _run_group(self, jobs: list[Job]) -> list[np.ndarray]:
        first = jobs[0]
        cond = self.condition([j.image for j in jobs])  # [B, C, 1, H', W']
        text = self.model.tokenize([j.prompt for j in jobs])
        generators = [torch.Generator(device=self.device).manual_seed(j.seed) for j in jobs]
        latents = generate(
            self.model, cond, text, frames=self.latent_frames_to_generate(first.frames), steps=first.steps,
            cfg=[j.cfg for j in jobs], mode="kv_cache", generator=generators,
            temperature=[progressive_temperature if j.temperature is None else j.temperature for j in jobs],
        )  # [B, C, 1 + frames', H', W']
        pixels = decode_latents(self.vae, latents)[:, :, : first.frames]  # [B, 3, frames, H, W]
        return [to_uint8_frames(video) for video in pixels]


def _groups(jobs: list[Job]) -> list[list[int]]:
    """Indices of the jobs, grouped by shape (one sampler call each)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[job.shape].append(i)
    return list(groups.values())


def answer(job: Job, video) -> dict:
    """The MP4 and its metadata; or, when sampling or encoding failed, ``{"failed": request id}``
    with the error logged under that id. One job's failure never fails its batch-mates."""
    try:
        if isinstance(video, Exception):
            raise video
        t, h, w, _ = video.shape
        return {"video": mp4_bytes(video), "frames": t, "height": h, "width": w, "fps": DEFAULT_FPS}
    except Exception:  # noqa: BLE001 -- logged here, answered with the id
        log.exception("request %s: generation failed", job.request_id)
        return {"failed": job.request_id}
