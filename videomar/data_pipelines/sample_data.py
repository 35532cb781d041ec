"""Sample videos of real handwritten digits (scikit-learn's bundled ``load_digits``) moving and
bouncing on a black canvas, with a caption each, so every pipeline can run with no downloads.

Each video draws, from a generator seeded by (seed, video index), one to three digits with their
own size, speed and direction; digits bounce off the canvas edges. The caption names the digits
and their initial direction, e.g. "a handwritten 3 moving up and left". Output: MP4 files under
``videos/`` and a ``manifest.jsonl`` (path relative to the manifest, caption, and the parameters),
written last so a manifest always lists whole videos.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from videomar.artifacts.media import DEFAULT_FPS, write_mp4
from videomar.artifacts.storage import atomic_path

MANIFEST_NAME = "manifest.jsonl"
VIDEO_DIR = "videos"
DEFAULT_FRAMES = 32
DEFAULT_SIZE = 64
SAMPLE_CRF = 18  # near-lossless: the digits' edges survive encoding for the VAE to learn
# Velocity components below this fraction of the speed are not named in the caption.
DIRECTION_THRESHOLD = 0.35


@dataclass(frozen=True)
class Digit:
    label: int
    image_index: int  # row of load_digits().images
    size: int  # rendered side in pixels
    x: float  # initial top-left corner
    y: float
    vx: float  # pixels per frame
    vy: float

    def direction(self) -> str:
        speed = max(abs(self.vx), abs(self.vy), 1e-9)
        vertical = "up" if self.vy < 0 else "down"
        horizontal = "left" if self.vx < 0 else "right"
        parts = [w for w, v in ((vertical, self.vy), (horizontal, self.vx)) if abs(v) >= DIRECTION_THRESHOLD * speed]
        return " and ".join(parts)


@dataclass(frozen=True)
class SampleVideo:
    path: str  # relative to the output directory
    caption: str
    frames: int
    size: int
    fps: int
    digits: tuple[Digit, ...]


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 8, 8] float in [0, 1], labels [N])."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)


def plan_video(seed: int, index: int, frames: int, size: int, fps: int) -> SampleVideo:
    """The random choices for one video: deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    images, labels = digit_images()
    count = int(rng.choice([1, 1, 2, 2, 3]))
    digits = []
    for _ in range(count):
        image_index = int(rng.integers(len(images)))
        side = int(rng.integers(size * 3 // 10, size // 2 + 1))
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.01, 0.05) * size
        digits.append(Digit(
            label=int(labels[image_index]), image_index=image_index, size=side,
            x=float(rng.uniform(0, size - side)), y=float(rng.uniform(0, size - side)),
            vx=float(speed * np.cos(angle)), vy=float(speed * np.sin(angle)),
        ))
    caption = " and ".join(f"a handwritten {d.label} moving {d.direction()}" for d in digits)
    return SampleVideo(path=f"{VIDEO_DIR}/{index:05d}.mp4", caption=caption, frames=frames, size=size,
                       fps=fps, digits=tuple(digits))


def render(video: SampleVideo) -> np.ndarray:
    """The frames of a planned video: uint8 [T, H, W, 3], bright digits on black."""
    from PIL import Image

    images, _ = digit_images()
    canvas = np.zeros((video.frames, video.size, video.size), dtype=np.float32)
    for d in video.digits:
        sprite = np.asarray(Image.fromarray(images[d.image_index]).resize((d.size, d.size), Image.BILINEAR))
        x, y, vx, vy = d.x, d.y, d.vx, d.vy
        limit = video.size - d.size
        for t in range(video.frames):
            draw(canvas[t], sprite, x, y)
            x, vx = bounce(x + vx, vx, limit)
            y, vy = bounce(y + vy, vy, limit)
    gray = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def draw(frame: np.ndarray, sprite: np.ndarray, x: float, y: float) -> None:
    """Draw ``sprite`` [s, s] onto ``frame`` [H, W] (brightest wins) with its top-left corner at
    (x, y), fractional coordinates by bilinear interpolation: a digit moving 0.4 pixels a frame
    moves 0.4 pixels in every frame, not one pixel in every other one (rounding made its motion
    jerky, so the next frame could not be told from the last two)."""
    left, top = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - left, y - top
    padded = np.pad(sprite, ((0, 1), (0, 1)))  # [s+1, s+1]: room for the shift
    # np.roll wraps the padding's zero row or column round to the other edge.
    across = (1 - fx) * padded + fx * np.roll(padded, 1, axis=1)
    shifted = (1 - fy) * across + fy * np.roll(across, 1, axis=0)
    patch = frame[top:top + shifted.shape[0], left:left + shifted.shape[1]]
    np.maximum(patch, shifted[:patch.shape[0], :patch.shape[1]], out=patch)


def bounce(pos: float, vel: float, limit: float) -> tuple[float, float]:
    """Reflect a coordinate off the walls at 0 and ``limit``."""
    if pos < 0:
        return -pos, -vel
    if pos > limit:
        return 2 * limit - pos, -vel
    return pos, vel


def write_sample_videos(output: str | Path, videos: int, seed: int = 0, frames: int = DEFAULT_FRAMES,
                        size: int = DEFAULT_SIZE, fps: int = DEFAULT_FPS) -> Path:
    """Write ``videos`` MP4s and their manifest under ``output``; returns the manifest path."""
    if videos < 1:
        raise ValueError(f"videos={videos}: must be >= 1")
    if frames < 1 or size < 16 or size % 2:
        raise ValueError(f"frames={frames}, size={size}: need frames >= 1 and an even size >= 16")
    out = Path(output)
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(videos):
        video = plan_video(seed, index, frames, size, fps)
        write_mp4(render(video), out / video.path, fps, crf=SAMPLE_CRF)
        rows.append(json.dumps({"path": video.path, "caption": video.caption, **{
            k: v for k, v in asdict(video).items() if k not in ("path", "caption")}}))
    manifest = out / MANIFEST_NAME
    with atomic_path(manifest) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    return manifest
