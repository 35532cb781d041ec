"""Helpers for tests that receive videos: images to send, MP4s to decode."""

from __future__ import annotations

import base64
import io
import tempfile

import numpy as np


def png_b64(height: int = 32, width: int = 32, seed: int = 0, fmt: str = "PNG") -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def decode_mp4(data: bytes) -> np.ndarray:
    """All frames of an MP4 [T, H, W, 3] uint8, read back with decord."""
    import decord

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        reader = decord.VideoReader(f.name)
        return reader.get_batch(list(range(len(reader)))).asnumpy()
