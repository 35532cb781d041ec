"""Serve over real HTTP on loopback under abuse: concurrent valid generation requests mixed with
malformed ones of every kind (deep JSON, huge numbers, strings as numbers, hostile PNGs, endless
chunked bodies, escaping or deep output prefixes, missing tokens, wrong Content-Type or Host) and
clients that hang up. No 5xx; every malformed request a 4xx naming its field; every valid request
an MP4; the service healthy after. Then batches past the limit (429) beside /v1/generate."""

from __future__ import annotations

import base64
import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.served import served
from tests.support.videos import decode_mp4, png_b64
from tests.unit.test_serve_hardening import BATCH_MALFORMED, MALFORMED, body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BODY_LIMIT = 2_000_000  # room for the 1 MB output_prefix, so that its own check answers
VALID = 32
TOKEN = "abuse-test-token"
GOOD = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Accept": "video/mp4"}
MAX_BATCH_INPUTS = 24


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with served(tmp_path_factory, TOKEN, {
        "deployment": {"max_batch_size": 8, "max_ongoing_requests": 16, "batch_wait_timeout_s": 0.1},
        "defaults": {"steps": 2},
        "limits": {"max_frames": 17, "max_height": 64, "max_width": 64, "max_body_bytes": BODY_LIMIT,
                   "max_batch_inputs": MAX_BATCH_INPUTS, "max_running_batches": 1},
    }) as base:
        yield base


# (name, body, field) for POST /v1/generate, on top of the unit tier's MALFORMED.
MORE = [
    ("malformed JSON", b'{"image": ', "body"),
    ("an empty body", b"", "body"),
    ("an unknown field", body(colour="red"), "colour"),
    ("no image", json.dumps({"frames": 5}).encode(), "image"),
    ("no frames", json.dumps({"image": png_b64()}).encode(), "frames"),
    ("one frame", body(frames=1), "frames"),
    ("frames over the limit", body(frames=99), "frames"),
    ("steps over the limit", body(steps=1000), "steps"),
    ("zero steps", body(steps=0), "steps"),
    ("a negative seed", body(seed=-1), "seed"),
    ("cfg below 1", body(cfg=0.5), "cfg"),
    ("temperature 0", body(temperature=0), "temperature"),
    ("a prompt too long", body(prompt="x" * 2001), "prompt"),
    ("image not base64", body(image="not base64!"), "image"),
    ("a GIF image", body(image=png_b64(fmt="GIF")), "image"),
    ("an image not a multiple of the model's", body(image=png_b64(30, 30)), "image"),
    ("an image over the size limit", body(image=png_b64(128, 128)), "image"),
    ("a JPEG that is text", body(image=base64.b64encode(b"\xff\xd8\xff hello").decode()), "image"),
]
# (name, data, field) for POST /v1/batches, on top of the unit tier's BATCH_MALFORMED.
MORE_BATCHES = [
    ("no inputs", {"inputs": []}, "inputs"),
    ("inputs not a list", {"inputs": {"a": 1}}, "inputs"),
    ("too many inputs", {"inputs": [json.loads(body())] * (MAX_BATCH_INPUTS + 1)}, "inputs"),
    ("a prefix climbing out", {"inputs": [json.loads(body())], "output_prefix": "../escape"}, "output_prefix"),
    ("an absolute prefix", {"inputs": [json.loads(body())], "output_prefix": "/etc/x"}, "output_prefix"),
    ("a URI prefix", {"inputs": [json.loads(body())], "output_prefix": "s3://other/x"}, "output_prefix"),
    ("the status folder", {"inputs": [json.loads(body())], "output_prefix": "_batches/x"}, "output_prefix"),
]
# (name, headers replacing GOOD's, field) for a valid POST /v1/generate body.
BAD_HEADERS = [
    ("no token", {"Authorization": ""}, "authorization"),
    ("a wrong token", {"Authorization": "Bearer nope"}, "authorization"),
    ("the token without Bearer", {"Authorization": TOKEN}, "authorization"),
    ("no Content-Type", {"Content-Type": ""}, "content-type"),
    ("text/plain", {"Content-Type": "text/plain"}, "content-type"),
    ("a form post", {"Content-Type": "application/x-www-form-urlencoded"}, "content-type"),
    ("a rebinding Host", {"Host": "evil.example"}, "host"),
    ("a Host ending in a loopback name", {"Host": "127.0.0.1.evil.example:80"}, "host"),
]
# (name, path, field) for GET.
BAD_GETS = [("not a batch id", "/v1/batches/not-an-id", "id"), ("an unknown batch", f"/v1/batches/{'a' * 32}", "id")]


def endless_chunks():
    """A chunked body (no Content-Length) far over the limit."""
    for _ in range(256):  # 4 MB
        yield b"[" * 16_384


def hang_up(base: str, how: str) -> None:
    """A client that closes its connection mid-request or before reading the answer."""
    parts = urlsplit(base)
    valid = body(frames=5)
    head = (f"POST /v1/generate HTTP/1.1\r\nHost: {parts.hostname}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\n").encode()
    sent = {
        "half the headers": head[:40],
        "half the body": head + f"Content-Length: {len(valid)}\r\n\r\n".encode() + valid[: len(valid) // 2],
        "before the answer": head + f"Content-Length: {len(valid)}\r\n\r\n".encode() + valid,
    }[how]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(sent)


def requests_to_send() -> list[tuple]:
    """(kind, method, path, data, headers, field): field None for a valid request."""
    sent = [("valid", "POST", "/v1/generate", body(seed=i, frames=5), {}, None) for i in range(VALID)]
    sent += [("malformed", "POST", "/v1/generate", raw, {}, field) for _, raw, field in MALFORMED + MORE]
    sent += [("malformed", "POST", "/v1/batches", json.dumps(data).encode(), {}, field)
             for _, data, field in BATCH_MALFORMED + MORE_BATCHES]
    sent += [("malformed", "POST", "/v1/generate", body(), headers, field) for _, headers, field in BAD_HEADERS]
    sent += [("malformed", "GET", path, None, {}, field) for _, path, field in BAD_GETS]
    sent += [("malformed", "POST", "/v1/generate", endless_chunks, {}, "body")]
    sent += [("hang-up", "", how, None, {}, None) for how in ("half the headers", "half the body", "before the answer")]
    random.Random(0).shuffle(sent)
    return sent


def send(base: str, item) -> tuple[str, str | None, requests.Response | None]:
    kind, method, path, data, headers, field = item
    if kind == "hang-up":
        hang_up(base, path)
        return kind, field, None
    sent = {k: v for k, v in {**GOOD, **headers}.items() if v}
    payload = data() if callable(data) else data
    return kind, field, requests.request(method, f"{base}{path}", data=payload, headers=sent, timeout=120)


def test_valid_requests_get_videos_and_malformed_ones_4xx_amid_each_other(url):
    items = requests_to_send()
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda item: send(url, item), items))
    statuses = [r.status_code for _, _, r in answers if r is not None]
    valid = [r for kind, _, r in answers if kind == "valid"]
    refused = [(field, r) for kind, field, r in answers if kind == "malformed"]
    named = [r for field, r in refused if 400 <= r.status_code < 500 and r.json()["error"].startswith(f"{field}:")]
    playable = [r for r in valid if r.status_code == 200 and decode_mp4(r.content).shape == (5, 32, 32, 3)]
    print(f"\nmixed run: {len(valid)} valid -> {len(playable)} playable MP4s; {len(refused)} malformed -> "
          f"{len(named)} 4xx naming their field; {sum(kind == 'hang-up' for kind, _, _ in answers)} clients hung up; "
          f"5xx: {sum(s >= 500 for s in statuses)}")
    assert len(refused) >= 40 and len(valid) == VALID
    assert not [s for s in statuses if s >= 500]
    assert len(playable) == VALID
    for field, r in refused:
        assert 400 <= r.status_code < 500, (field, r.status_code, r.text[:300])
        answer = r.json()
        assert answer["error"].startswith(f"{field}:"), (field, answer)
        assert answer["request_id"] == r.headers["x-videomar-request-id"]
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    after = requests.post(f"{url}/v1/generate", data=body(frames=2), headers=GOOD, timeout=60)
    assert after.status_code == 200 and decode_mp4(after.content).shape[0] == 2


def test_docs_routes_are_off(url):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert requests.get(f"{url}{path}", headers=GOOD, timeout=30).status_code == 404, path


def test_batches_past_the_limit_get_429_and_generate_is_not_starved(url):
    inputs = [json.loads(body(seed=i, frames=5)) for i in range(MAX_BATCH_INPUTS)]
    first = requests.post(f"{url}/v1/batches", json={"inputs": inputs}, headers=GOOD, timeout=60)
    assert first.status_code == 202, first.text
    second = requests.post(f"{url}/v1/batches", json={"inputs": inputs[:1]}, headers=GOOD, timeout=60)
    assert second.status_code == 429 and int(second.headers["Retry-After"]) > 0, second.text
    assert second.json()["error"].startswith("batches:")
    # Batch inputs hold at most half of the sampler's request slots, so this request is sampled
    # in one of the next sampler calls, not after every input of the batch.
    interactive = requests.post(f"{url}/v1/generate", data=body(frames=5), headers=GOOD, timeout=120)
    status_then = requests.get(f"{url}/v1/batches/{first.json()['id']}", headers=GOOD, timeout=30).json()
    assert interactive.status_code == 200 and decode_mp4(interactive.content).shape[0] == 5
    assert status_then["status"] == "running" and status_then["done"] < MAX_BATCH_INPUTS, status_then
    deadline = time.monotonic() + 180
    while status_then["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        status_then = requests.get(f"{url}/v1/batches/{first.json()['id']}", headers=GOOD, timeout=30).json()
    assert status_then["status"] == "succeeded" and status_then["done"] == MAX_BATCH_INPUTS, status_then
    again = requests.post(f"{url}/v1/batches", json={"inputs": inputs[:1]}, headers=GOOD, timeout=60)
    assert again.status_code == 202, again.text
