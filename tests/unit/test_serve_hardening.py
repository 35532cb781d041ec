"""The endpoint under hostile input, without Serve: every malformed request is a RequestError
(4xx) whose message names the field; the body cap holds while reading; a job that fails inside a
batch fails alone."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4, png_b64
from videomar.platform.serving.batches import output_prefix
from videomar.platform.serving.bodies import MAX_JSON_DEPTH, parse_json, read_body
from videomar.platform.serving.engine import Engine, Job, answer
from videomar.platform.serving.requests import BatchRequest, GenerateRequest, RequestError, to_job, validate
from videomar.platform.specs.serve import Limits, SamplerDefaults

LIMITS = Limits(max_frames=17, max_height=64, max_width=64)


def edge(raw: bytes, model=GenerateRequest) -> list:
    """What the ingress does with a body before the sampler: parse, validate, make the jobs."""
    req = validate(model, parse_json(raw))
    inputs = req.inputs if model is BatchRequest else [req]
    jobs = [to_job(r, LIMITS, SamplerDefaults(steps=4), 8, f"inputs.{i}." if model is BatchRequest else "")
            for i, r in enumerate(inputs)]
    if model is BatchRequest:
        output_prefix("/root", req.output_prefix, "b" * 32)
    return jobs


def body(**over) -> bytes:
    return json.dumps({"image": png_b64(), "frames": 5, "seed": 3, **over}).encode()


def png_with_text_chunk(megabytes: int) -> str:
    """A valid 32x32 PNG carrying a zTXt chunk that inflates to ``megabytes`` MB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * (megabytes * 2**20), zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG", pnginfo=info)
    return base64.b64encode(buf.getvalue()).decode()


def png_claiming(width: int, height: int) -> str:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


MALFORMED = [
    ("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "body"),
    ("objects nested past the limit", b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "body"),
    ("a 5,000-digit integer", body().replace(b'"seed": 3', b'"seed": ' + b"9" * 5000), "seed"),
    ("a 5,000-digit float", body().replace(b'"seed": 3', b'"seed": 3, "cfg": 1.' + b"5" * 5000), "cfg"),
    ("an infinite float", body().replace(b'"seed": 3', b'"seed": 3, "temperature": 1e999'), "temperature"),
    ("NaN", body().replace(b'"seed": 3', b'"seed": 3, "cfg": NaN'), "cfg"),
    ("not UTF-8", b'{"image": "\xff\xfe"}', "body"),
    ("not an object", b"[1, 2]", "body"),
    ("frames as a string", body(frames="5"), "frames"),
    ("steps as a boolean", body(steps=True), "steps"),
    ("seed as a float", body(seed=7.0), "seed"),
    ("cfg as a string", body(cfg="3"), "cfg"),
    ("prompt as a number", body(prompt=5), "prompt"),
    ("image as a number", body(image=5), "image"),
    ("a 4 MB compressed text chunk", body(image=png_with_text_chunk(4)), "image"),
    ("a decompression bomb's header", body(image=png_claiming(60_000, 60_000)), "image"),
    ("a truncated PNG", body(image=base64.b64encode(base64.b64decode(png_b64())[:80]).decode()), "image"),
]
BATCH_MALFORMED = [
    ("frames as a string in an input", {"inputs": [json.loads(body()), json.loads(body(frames="5"))]},
     "inputs.1.frames"),
    ("a nested integer too long", {"inputs": [{**json.loads(body()), "seed": 10**60}]}, "inputs.0.seed"),
    ("output_prefix of 200 segments", {"inputs": [json.loads(body())], "output_prefix": "/".join(["a"] * 200)},
     "output_prefix"),
    ("a 1 MB output_prefix", {"inputs": [json.loads(body())], "output_prefix": "a" * 2**20}, "output_prefix"),
]


@pytest.mark.parametrize("name, raw, field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_each_malformed_request_is_a_4xx_naming_its_field(name, raw, field):
    with pytest.raises(RequestError) as caught:
        edge(raw)
    assert 400 <= caught.value.status < 500
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


@pytest.mark.parametrize("name, data, field", BATCH_MALFORMED, ids=[m[0] for m in BATCH_MALFORMED])
def test_each_malformed_batch_is_a_4xx_naming_its_field(name, data, field):
    with pytest.raises(RequestError) as caught:
        edge(json.dumps(data).encode(), BatchRequest)
    assert caught.value.status == 422
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


def test_valid_requests_pass_the_edge_with_ints_taken_as_floats():
    (job,) = edge(body(cfg=2, temperature=1))
    assert (job.frames, job.cfg, job.temperature, job.seed) == (5, 2.0, 1.0, 3)
    jobs = edge(json.dumps({"inputs": [json.loads(body())] * 2, "output_prefix": "a/b/c"}).encode(), BatchRequest)
    assert len(jobs) == 2


def test_body_cap_holds_while_reading_an_endless_chunked_body():
    pulled = 0

    async def endless():  # a chunked body with no declared length that never ends
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 4096

    with pytest.raises(RequestError) as caught:
        asyncio.run(read_body(endless(), None, 100_000))
    assert caught.value.status == 413 and str(caught.value).startswith("body:")
    assert pulled == 100_000 // 4096 + 1  # stopped at the first chunk past the cap

    with pytest.raises(RequestError, match="^body: 200000 bytes") as caught:
        asyncio.run(read_body(endless(), "200000", 100_000))  # a declared length: refused unread
    assert caught.value.status == 413

    async def small():
        yield b'{"a": '
        yield b"1}"
    assert asyncio.run(read_body(small(), None, 100_000)) == b'{"a": 1}'


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine.load(write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage")), device="cpu")


def test_a_job_that_fails_in_a_batch_fails_alone(engine, caplog):
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    good = [Job(image, "", frames=5, steps=2, cfg=1.0, temperature=None, seed=s, request_id=f"ok{s}") for s in (1, 2)]
    # Same shape as its batch-mates, so all three share one sampler call; 4 channels break the VAE.
    broken = Job(np.zeros((32, 32, 4), np.uint8), "", 5, 2, 1.0, None, 3, request_id="broken-one")
    jobs = [good[0], broken, good[1]]
    assert len({j.shape for j in jobs}) == 1
    videos = engine.run_each(jobs)
    assert isinstance(videos[1], Exception)
    assert [v.shape for v in (videos[0], videos[2])] == [(5, 32, 32, 3)] * 2
    alone = engine.run([good[0]])[0]
    assert np.abs(videos[0].astype(int) - alone.astype(int)).mean() < 1.0  # up to batched rounding

    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        answers = [answer(j, v) for j, v in zip(jobs, videos)]
        unencodable = answer(good[0], np.zeros((5, 32, 32), np.uint8))  # encoding fails, alone
    assert answers[1] == {"failed": "broken-one"} and unencodable == {"failed": "ok1"}
    assert decode_mp4(answers[0]["video"]).shape == (5, 32, 32, 3) and answers[2]["frames"] == 5
    assert "broken-one" in caplog.text and "Traceback" in caplog.text  # the full error, in the log
