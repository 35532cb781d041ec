"""Cutting videos into fixed-length clips: decoding with decord (PyAV for what decord cannot open) and the one resize + centre crop
used everywhere pixels meet a model (precompute, VAE training, evaluation ground truth).

A clip of ``frames`` frames taken every ``stride`` source frames spans ``(frames - 1) * stride + 1``
source frames. Clips of a video start at 0 and follow each other without overlap, so clip ``i``
starts at ``offset + i * span``: the start frame can always be recomputed from the clip index.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket


class ClipError(ValueError):
    """A video cannot give the clip asked for (unreadable, or too short)."""


class EmptyVideo(ClipError):
    """The file has zero bytes."""


class UndecodableVideo(ClipError):
    """The file is not a video decord or PyAV can read: random bytes, another format, or truncated."""


class VideoTooShort(ClipError):
    """The video has fewer frames than one clip spans."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float


def clip_span(frames: int, stride: int) -> int:
    """Source frames covered by one clip of ``frames`` frames taken every ``stride`` frames."""
    return (frames - 1) * stride + 1


def clip_starts(total_frames: int, frames: int, stride: int = 1, max_clips: int | None = None,
                offset: int = 0) -> list[int]:
    """Start frames of the non-overlapping clips that fit in ``total_frames`` (from ``offset``),
    at most ``max_clips`` of them (None = all)."""
    if frames < 1 or stride < 1:
        raise ValueError(f"frames={frames}, stride={stride}: both must be >= 1")
    span = clip_span(frames, stride)
    available = total_frames - offset
    count = (available - span) // span + 1 if available >= span else 0
    if max_clips is not None:
        count = min(count, max_clips)
    return [offset + i * span for i in range(count)]


def open_video(source: str | bytes):
    """A decord VideoReader on a local path, an ``s3://`` URI or the bytes of a video file.

    decord reports unreadable or truncated files with DECORDError, which is not a RuntimeError;
    every failure to open comes out as a ClipError naming the source (EmptyVideo, UndecodableVideo)
    or FileNotFoundError when the file does not exist."""
    import decord

    where = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        elif storage.is_s3(str(source)):
            data = storage.read_bytes(str(source))
        else:
            data = None
            if not os.path.isfile(where):
                raise FileNotFoundError(f"{where}: no such file")
            if os.path.getsize(where) == 0:
                raise EmptyVideo(f"{where}: empty file (0 bytes)")
        if data is not None and not data:
            raise EmptyVideo(f"{where}: empty file (0 bytes)")
        # One decoding thread: clips are decoded in parallel by Ray tasks, not inside one decoder.
        if data is not None:
            return decord.VideoReader(io.BytesIO(data), num_threads=1)
        return decord.VideoReader(where, num_threads=1)
    except (ClipError, FileNotFoundError):
        raise
    except (decord.DECORDError, RuntimeError, ValueError) as err:
        return second_decoder(data if data is not None else where, where, err)


def second_decoder(source: str | bytes, where: str, first: BaseException):
    """PyAV's reading of a file decord refused (an animated GIF...), or UndecodableVideo naming
    both decoders' reasons."""
    from videomar.data_pipelines.second_decoder import open_with_pyav

    try:
        return open_with_pyav(source, where)
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise UndecodableVideo(
            f"{where}: cannot decode as a video (decord: {type(first).__name__}: {first_line(first)}; "
            f"PyAV: {type(err).__name__}: {first_line(err)})") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def video_info(reader) -> VideoInfo:
    return VideoInfo(frames=len(reader), fps=float(reader.get_avg_fps() or 0.0))


def stride_for_fps(video_fps: float, target_fps: float | None, stride: int = 1) -> int:
    """The frame stride that brings ``video_fps`` closest to ``target_fps`` (``stride`` if no target)."""
    if target_fps is None or video_fps <= 0:
        return stride
    return max(1, round(video_fps / target_fps))


def read_frames(reader, start: int, frames: int, stride: int, where: str) -> np.ndarray:
    """uint8 [T, H, W, 3] frames start, start + stride, ... from an open reader."""
    import decord

    total = len(reader)
    last = start + (frames - 1) * stride
    if start < 0 or last >= total:
        raise VideoTooShort(
            f"{where}: {total} frames, but a clip of {frames} frames with stride {stride} from frame {start} "
            f"needs {last + 1}"
        )
    try:
        return reader.get_batch(list(range(start, last + 1, stride))).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:  # decord's reader only: PyAV's decoded already
        raise UndecodableVideo(f"{where}: decoding frames {start}..{last} failed ({type(err).__name__}: {first_line(err)})") from None


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, h, w, 3] -> uint8 [T, height, width, 3]: scale so the frame covers the target
    (bilinear, antialiased when shrinking), then crop the centre. PIL, not torch: decode workers
    stay light and start fast."""
    from PIL import Image

    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    new_h, new_w = max(height, math.ceil(h * scale - 1e-6)), max(width, math.ceil(w * scale - 1e-6))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    box = (left, top, left + width, top + height)
    out = np.empty((t, height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(np.ascontiguousarray(frame))
        if (new_h, new_w) != (h, w):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        out[i] = np.asarray(image.crop(box))
    return out


def decode_clip(path: str, start: int, frames: int, stride: int, height: int, width: int,
                reader=None) -> np.ndarray:
    """The clip of ``frames`` frames from ``start`` every ``stride`` frames, resized and centre
    cropped: uint8 [T, height, width, 3]. VideoTooShort / ClipError name the file."""
    reader = reader if reader is not None else open_video(path)
    return resize_crop(read_frames(reader, start, frames, stride, str(path)), height, width)


def to_model_pixels(clip: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [3, T, H, W] in [-1, 1] (the VAE's input layout)."""
    x = clip.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2))


def read_clip(source: str, clip_index: int, bucket: Bucket, stride: int = 1,
              start: int | None = None) -> np.ndarray:
    """The pixels the precompute encoded for one shard row: float32 [3, T, H, W] in [-1, 1].

    ``bucket`` is (frames, height, width). Pass the row's ``start_frame`` and ``stride`` when the
    dataset stores them; without ``start`` the clip is the ``clip_index``-th from frame 0."""
    frames, height, width = (int(v) for v in bucket)
    if start is None:
        start = clip_index * clip_span(frames, stride)
    return to_model_pixels(decode_clip(source, int(start), frames, int(stride), height, width))
