"""Sample videos from the EMA weights during a stage (rank 0), logged to MLflow.

The conditions are the first clips rank 0 trains on: their first latent frame is the image
condition and their caption the text; the sampler generates the rest of the clip with the KV
cache, the VAE decodes it, and the video is written as GIF or MP4.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from videomar.artifacts import storage
from videomar.artifacts.media import decode_latents
from videomar.artifacts.media import to_uint8_frames, write_gif, write_mp4
from videomar.model.sampler import generate
from videomar.model.vae import load_vae
from videomar.model.videomar import build_model
from videomar.platform.training.config import StagePlan
from videomar.platform.training.data import Batch
from videomar.artifacts.text_shards import attach_text

COND_FRAMES = 1  # the image condition: the first latent frame


class StageSampler:
    def __init__(self, plan: StagePlan, device: torch.device, tmp_root: str | None = None):
        self.plan = plan
        self.device = device
        self.out_dir = Path(tempfile.mkdtemp(prefix="videomar-samples-", dir=tmp_root))
        self.cond: torch.Tensor | None = None  # [n, C, 1, H', W'] scaled latents
        self.captions: list[str] = []
        self._vae = None

    def keep_conditions(self, batch: Batch) -> None:
        """Keep the first batch's first frames and captions as the sampling conditions."""
        if self.cond is not None:
            return
        n = min(self.plan.spec.samples.count, batch.mean.shape[0])
        self.cond = batch.mean[:n, :, :COND_FRAMES].clone() * self.plan.dataset.latent_scale
        self.captions = list(batch.captions[:n])

    def vae(self):
        if self._vae is None:
            uri = self.plan.dataset.vae_uri
            if storage.is_s3(uri):
                local = tempfile.mkdtemp(prefix="videomar-vae-", dir=self.out_dir)
                storage.copy_tree(uri, local)
                uri = local
            self._vae = load_vae(uri).to(self.device).eval()
        return self._vae

    @torch.no_grad()
    def sample(self, ema, step: int, logger) -> list[Path]:
        """Generate, decode and write the sample videos for ``step``; log them when a logger is given."""
        if self.cond is None:
            return []
        spec = self.plan.spec
        model = attach_text(build_model(spec.model.build()), self.plan.dataset.manifest_uri, self.plan.dataset.text)
        model.load_state_dict(ema.state_dict())
        model.to(self.device).eval()
        # The rest of a training clip; for an image bucket (one latent frame), one frame more.
        frames = max(1, self.plan.dataset.latent_shape[1] - COND_FRAMES)
        text = model.tokenize(self.captions).to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(spec.seed)
        latents = generate(model, self.cond.to(self.device), text, frames=frames, steps=spec.samples.steps,
                           cfg=spec.samples.cfg, generator=gen)  # [n, C, T', H', W']
        pixels = decode_latents(self.vae(), latents)  # [n, 3, T, H, W] in [-1, 1]
        paths = [self._write(video, step, i) for i, video in enumerate(pixels)]
        if logger is not None:
            for path in paths:
                logger.log_artifact(str(path), artifact_path=f"samples/step_{step:08d}")
        return paths

    def _write(self, video: torch.Tensor, step: int, index: int) -> Path:
        fmt = self.plan.spec.samples.format
        path = self.out_dir / f"step{step:08d}_{index}.{fmt}"
        write = write_gif if fmt == "gif" else write_mp4
        return write(to_uint8_frames(video), path)
