"""Request bodies of the HTTP API, validated at the edge.

Everything a client sends is checked here and turned into ``Job`` objects, or refused with a
``RequestError`` whose message starts with the field at fault (``frames``, ``image``,
``inputs.3.seed``...). The ingress answers those with HTTP 422 (413 for an oversized body).

Images: base64 PNG or JPEG (optionally a ``data:image/...;base64,`` URL). The output video has
the image's resolution; an image whose height or width is not a multiple of the model's spatial
multiple, or is larger than the limits, is **rejected**, never resized.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets
import struct
import zlib
from typing import Any

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from videomar.errors import UserError
from videomar.platform.serving.engine import Job
from videomar.platform.specs.generate import MAX_SEED
from videomar.platform.specs.serve import Limits, SamplerDefaults


class RequestError(UserError):
    """A request is invalid; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


# /v1/batches output_prefix: a path below the storage root, short and shallow.
MAX_PREFIX_CHARS = 256
MAX_PREFIX_SEGMENTS = 8
# What Pillow raises on hostile or broken bytes (text chunks over PngImagePlugin.MAX_TEXT_CHUNK
# raise ValueError, broken chunks SyntaxError or struct.error): all a bad image, answered 422.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError, TypeError)


class GenerateRequest(BaseModel):
    """POST /v1/generate, and each entry of POST /v1/batches ``inputs``. Strict: a string or a
    boolean is never taken for a number (an int is taken for a float)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    image: str = Field(description="condition image, base64 PNG or JPEG; becomes frame 0")
    frames: int = Field(ge=2, description="pixel frames of the output video, the image included")
    prompt: str = Field(default="", max_length=2000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="omitted: a random seed, echoed back")
    cfg: float | None = Field(default=None, ge=1.0, le=50.0, description="guidance scale; 1 disables guidance")
    temperature: float | None = Field(default=None, gt=0.0, le=5.0, description="omitted: progressive schedule")
    steps: int | None = Field(default=None, ge=1, description="spatial steps per latent frame")


class BatchRequest(BaseModel):
    """POST /v1/batches: many inputs; videos land under ``output_prefix`` inside the storage root."""

    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: list[GenerateRequest] = Field(min_length=1)
    output_prefix: str | None = Field(default=None, max_length=MAX_PREFIX_CHARS,
                                      description="relative path under the storage root")


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        raise RequestError(describe(err)) from None


def describe(err: pydantic.ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "body"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def decode_image(data: str, field: str = "image", limits: Limits | None = None, multiple: int = 1) -> np.ndarray:
    """base64 PNG/JPEG (or a data: URL) -> [H, W, 3] uint8, size checked (see image_from_bytes)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{field}: not valid base64") from None
    return image_from_bytes(raw, field, limits, multiple)


def image_from_bytes(raw: bytes, field: str = "image", limits: Limits | None = None, multiple: int = 1) -> np.ndarray:
    """PNG/JPEG bytes -> [H, W, 3] uint8 (RGB; alpha dropped, grey expanded). The size is checked
    from the header, before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in ("PNG", "JPEG"):
                raise RequestError(f"{field}: a {img.format} image; send PNG or JPEG")
            check_image_size(img.height, img.width, limits, multiple, field)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except RequestError:  # a UserError, so a ValueError: ours, passed on as it is
        raise
    except Image.DecompressionBombError:
        raise RequestError(f"{field}: too many pixels to decode") from None
    except UnidentifiedImageError:
        raise RequestError(f"{field}: not a PNG or JPEG image") from None
    except IMAGE_ERRORS as err:  # Pillow's messages name no internals and help the client
        reason = f"{type(err).__name__}: {err}"[:200]
        raise RequestError(f"{field}: not a PNG or JPEG image, or a truncated or oversized one ({reason})") from None


def to_job(req: GenerateRequest, limits: Limits, defaults: SamplerDefaults, multiple: int,
           field: str = "", request_id: str = "") -> Job:
    """Check one request against the limits and decode its image."""
    if req.frames > limits.max_frames:
        raise RequestError(f"{field}frames: {req.frames} exceeds the limit of {limits.max_frames}")
    steps = req.steps if req.steps is not None else defaults.steps
    if steps > limits.max_steps:
        raise RequestError(f"{field}steps: {steps} exceeds the limit of {limits.max_steps}")
    image = decode_image(req.image, f"{field}image", limits, multiple)
    return Job(
        image=image, prompt=req.prompt, frames=req.frames, steps=steps,
        cfg=req.cfg if req.cfg is not None else defaults.cfg,
        temperature=req.temperature if req.temperature is not None else defaults.temperature,
        seed=req.seed if req.seed is not None else secrets.randbelow(MAX_SEED), request_id=request_id,
    )


def check_image_size(h: int, w: int, limits: Limits | None, multiple: int, field: str) -> None:
    """Reject (never resize) an image the model cannot take; ``limits`` None checks the multiple only."""
    if h % multiple or w % multiple:
        raise RequestError(
            f"{field}: {w}x{h} pixels; width and height must be multiples of {multiple} "
            f"(images are rejected, not resized)"
        )
    if limits is not None and (h > limits.max_height or w > limits.max_width):
        raise RequestError(
            f"{field}: {w}x{h} pixels exceeds the limit of {limits.max_width}x{limits.max_height} "
            f"(images are rejected, not resized)"
        )
