"""From latents to files people can watch: decode through a VAE, then MP4 (imageio-ffmpeg's
bundled ffmpeg with libx264), GIF, and a PNG contact sheet of frames."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from videomar.artifacts.storage import atomic_path

DEFAULT_FPS = 8
# x264's constant rate factor for MP4s: 10, what imageio's quality 8 gave before (visually lossless).
DEFAULT_CRF = 10


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled model latents [B, C, T', H', W'] -> pixels [B, 3, T, H, W] in [-1, 1]."""
    return vae.decode(latents / vae.scale).clamp(-1.0, 1.0)


def to_uint8_frames(pixels: torch.Tensor) -> np.ndarray:
    """One video [3, T, H, W] in [-1, 1] -> [T, H, W, 3] uint8."""
    if pixels.ndim != 4 or pixels.shape[0] != 3:
        raise ValueError(f"expected one video [3, T, H, W], got {tuple(pixels.shape)}")
    frames = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def h264_command(width: int, height: int, fps: int, *output: str) -> list[str]:
    """The ffmpeg command that reads raw RGB frames of ``width`` x ``height`` on stdin and
    encodes them as H.264 (yuv420p, sizes padded to even, one thread), then ``output``: the
    container's options and where it goes."""
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1", *output]


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = DEFAULT_FPS, crf: int | None = None) -> Path:
    """[T, H, W, 3] uint8 -> an H.264 MP4 (yuv420p, so sizes are padded to even by ffmpeg), at
    x264's constant rate factor ``crf`` (lower is better; default ``DEFAULT_CRF``). Raises
    RuntimeError with ffmpeg's exit status and its own message when it fails.

    One ``subprocess.run`` with the frames as its input, not imageio-ffmpeg's frame writer. That
    writer starts ffmpeg through a ``preexec_fn``, so Python forks the whole process instead of
    spawning ffmpeg, and every fork handler runs (gRPC's, in a Ray worker). It also leaves
    ffmpeg's stderr out of its errors. A Serve replica encoding thirty videos at once once got
    a broken pipe from it and no message (NOTES.md). ``run`` spawns ffmpeg and keeps its stderr.
    """
    t, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        cmd = h264_command(w, h, fps, "-crf", str(DEFAULT_CRF if crf is None else crf), "-f", "mp4", "-y", str(tmp))
        data = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()
        done = subprocess.run(cmd, input=data, capture_output=True, check=False)
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[-1000:] or "(no message)"
            raise RuntimeError(f"ffmpeg failed writing {path} ({t} frames of {w}x{h}): exit status "
                               f"{done.returncode}: {message}")
    return Path(path)


def mp4_bytes(frames: np.ndarray, fps: int = DEFAULT_FPS) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return write_mp4(frames, Path(d) / "video.mp4", fps).read_bytes()


def write_gif(frames: np.ndarray, path: str | Path, fps: int = DEFAULT_FPS) -> Path:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return Path(path)


def write_contact_sheet(frames: np.ndarray, path: str | Path, columns: int = 8, scale: int = 2) -> Path:
    """All frames in a grid (row-major), each upscaled `scale` times, as a PNG."""
    from PIL import Image

    t, h, w, _ = frames.shape
    cols = min(columns, t)
    rows = -(-t // cols)
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).resize((cols * w * scale, rows * h * scale), Image.NEAREST).save(tmp, format="PNG")
    return Path(path)


def write_outputs(frames: np.ndarray, stem: str | Path, fps: int = DEFAULT_FPS) -> dict[str, Path]:
    """MP4, GIF and contact sheet side by side: {stem}.mp4, {stem}.gif, {stem}.png."""
    stem = Path(stem)
    return {
        "mp4": write_mp4(frames, stem.with_suffix(".mp4"), fps),
        "gif": write_gif(frames, stem.with_suffix(".gif"), fps),
        "png": write_contact_sheet(frames, stem.with_suffix(".png")),
    }
