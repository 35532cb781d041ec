"""Request validation at the edge: image decoding and size rules, limits, defaults."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.support.videos import png_b64
from videomar.platform.serving.requests import GenerateRequest, RequestError, decode_image, to_job, validate
from videomar.platform.specs.serve import Limits, SamplerDefaults


def encoded(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_png_jpeg_data_urls_grey_and_alpha_become_rgb():
    assert decode_image(png_b64(16, 24)).shape == (16, 24, 3)
    jpeg = encoded(Image.new("RGB", (24, 16), (200, 10, 10)), "JPEG")
    pixels = decode_image(jpeg)
    assert pixels.shape == (16, 24, 3) and abs(int(pixels[..., 0].mean()) - 200) < 5
    assert decode_image(f"data:image/jpeg;base64,{jpeg}").shape == (16, 24, 3)
    assert decode_image(encoded(Image.new("L", (8, 8), 7), "PNG"))[0, 0].tolist() == [7, 7, 7]
    assert decode_image(encoded(Image.new("RGBA", (8, 8), (1, 2, 3, 0)), "PNG"))[0, 0].tolist() == [1, 2, 3]


def test_size_is_checked_from_the_header_and_never_resized():
    limits = Limits(max_height=64, max_width=64)
    with pytest.raises(RequestError, match=r"^image: 24x16 pixels; width and height must be multiples of 32"):
        decode_image(png_b64(16, 24), "image", limits, 32)
    huge = encoded(Image.new("L", (20000, 8), 0), "PNG")  # small file, 160k pixels
    with pytest.raises(RequestError, match="^image: 20000x8 pixels exceeds the limit of 64x64"):
        decode_image(huge, "image", limits, 8)
    truncated = base64.b64encode(base64.b64decode(png_b64(32, 32))[:60]).decode()
    with pytest.raises(RequestError, match="image: not a PNG or JPEG"):
        decode_image(truncated)


def test_requests_get_defaults_and_a_seed_and_limits_name_the_field():
    limits, defaults = Limits(max_frames=9, max_steps=8), SamplerDefaults(steps=4, cfg=2.5)
    job = to_job(GenerateRequest(image=png_b64(), frames=9), limits, defaults, 8)
    assert (job.frames, job.steps, job.cfg, job.temperature, job.prompt) == (9, 4, 2.5, None, "")
    assert 0 <= job.seed < 2**63 and isinstance(job.image, np.ndarray)
    with pytest.raises(RequestError, match="^inputs.2.steps: 9 exceeds the limit of 8"):
        to_job(GenerateRequest(image=png_b64(), frames=3, steps=9), limits, defaults, 8, "inputs.2.")
    with pytest.raises(RequestError, match="^frames: Input should be greater than or equal to 2"):
        validate(GenerateRequest, {"image": png_b64(), "frames": 1})
    with pytest.raises(RequestError, match="^frames: Input should be a valid integer"):
        validate(GenerateRequest, {"image": png_b64(), "frames": "many"})
