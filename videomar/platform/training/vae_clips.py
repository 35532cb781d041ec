"""The VAE trainer's data and measures: clips decoded once on the driver (uint8, a quarter of the
memory of model pixels), reconstruction PSNR and the latent scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from videomar.artifacts import storage
from videomar.data_pipelines.clips import ClipError
from videomar.data_pipelines.clips import clip_starts, decode_clip, open_video
from videomar.data_pipelines.clips import to_model_pixels
from videomar.data_pipelines.sources import list_sources
from videomar.errors import ConfigError
from videomar.model.pixels import psnr_db
from videomar.model.vae import VideoVAE
from videomar.platform.specs.train_vae import TrainVAESpec

EVAL_BATCH = 16


@dataclass(frozen=True)
class ClipSet:
    frames: np.ndarray  # uint8 [N, T, H, W, 3]: a quarter of the memory of model pixels
    videos: int  # videos that gave at least one clip
    skipped: list[str]  # "path: reason" for videos that gave none


def list_videos(source: str) -> list:
    """The VideoSources named by ``source`` (folder, s3:// prefix or CSV/JSONL/Parquet
    manifest, as the precompute reads them); ConfigError names the source when it cannot."""
    try:
        videos = list_sources(source)
    except (OSError, ValueError) as err:
        raise ConfigError(f"source={storage.absolute(source)}: {err}") from None
    if not videos:
        raise ConfigError(f"source={storage.absolute(source)}: lists no videos")
    return videos


def load_clips(spec: TrainVAESpec) -> ClipSet:
    """Decode up to ``clips_per_video`` clips of every video; unreadable or short videos are
    skipped with their reason. ConfigError when no clip at all could be read."""
    d = spec.data
    videos = list_videos(spec.source)[: d.max_videos]
    clips, skipped, used = [], [], 0
    for video in videos:
        if video.problem:
            skipped.append(f"{video.uri}: {video.problem}")
            continue
        try:
            got = video_clips(video, spec)
        except ClipError as err:
            skipped.append(str(err))
            continue
        if not got:
            skipped.append(f"{video.uri}: shorter than one clip of {d.frames} frames with stride {d.stride}")
            continue
        clips += got
        used += 1
    if not clips:
        raise ConfigError(f"source={storage.absolute(spec.source)}: no clip could be read from {len(videos)} videos")
    return ClipSet(frames=np.stack(clips), videos=used, skipped=skipped)


def video_clips(video, spec: TrainVAESpec) -> list[np.ndarray]:
    """uint8 [T, H, W, 3] clips (resized and centre cropped) of one VideoSource, within its bounds."""
    d = spec.data
    reader = open_video(video.uri)
    end = len(reader) if video.end is None else min(video.end, len(reader))
    starts = clip_starts(end, d.frames, d.stride, max_clips=d.clips_per_video, offset=video.start)
    return [decode_clip(video.uri, s, d.frames, d.stride, d.height, d.width, reader=reader) for s in starts]


def model_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [n, T, H, W, 3] clips -> float32 [n, 3, T, H, W] in [-1, 1] (the VAE's input)."""
    return torch.from_numpy(np.stack([to_model_pixels(clip) for clip in frames]))


def batches(frames: np.ndarray, size: int = EVAL_BATCH):
    """Model pixels [b, 3, T, H, W] of consecutive clips, ``size`` at a time."""
    for i in range(0, len(frames), size):
        yield model_pixels(frames[i:i + size])


@torch.no_grad()
def reconstruction_psnr(vae: VideoVAE, frames: np.ndarray) -> float:
    """PSNR (dB) of decode(posterior mean) against uint8 clips [N, T, H, W, 3], over all pixels."""
    vae.eval()
    squared, count = 0.0, 0
    for batch in batches(frames):
        recon = vae.decode(vae.encode(batch)[0])
        squared += float((recon - batch[:, :, : recon.shape[2]]).pow(2).sum())
        count += recon.numel()
    return psnr(squared / count)


def psnr(mse: float) -> float:
    """PSNR (dB) of a mean squared error of pixels in [-1, 1]."""
    return float(psnr_db(torch.tensor(max(mse, 1e-12), dtype=torch.float64)))


@torch.no_grad()
def latent_scale(vae: VideoVAE, frames: np.ndarray) -> float:
    """1 / std of the posterior means over the clips: scaled latents have about unit variance."""
    vae.eval()
    means = torch.cat([vae.encode(batch)[0].flatten() for batch in batches(frames)])
    return float(1.0 / means.std().clamp_min(1e-6))
