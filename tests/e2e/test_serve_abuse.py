"""Serve over real HTTP on loopback under abuse: concurrent valid generation requests mixed with
malformed ones (deep JSON, huge numbers, strings as numbers, hostile PNGs, endless chunked bodies,
deep output prefixes). No 5xx; every valid request an MP4; the service healthy after."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.ray_local import local_ray
from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4
from tests.unit.test_serve_hardening import BATCH_MALFORMED, MALFORMED, body
from videomar.platform.jobs import parse_spec
from videomar.platform.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
BODY_LIMIT = 2_000_000  # room for the 1 MB output_prefix, so that its own check answers
VALID = 32


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    import ray
    from ray import serve

    from videomar.platform.serving.app import start

    export = write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage"))
    ray.shutdown()
    local_ray()
    spec = parse_spec({
        "kind": "serve", "export": export, "http": {"host": "127.0.0.1", "port": free_port()},
        "deployment": {"max_batch_size": 8, "max_ongoing_requests": 16, "batch_wait_timeout_s": 0.1},
        "defaults": {"steps": 2},
        "limits": {"max_frames": 17, "max_height": 64, "max_width": 64, "max_body_bytes": BODY_LIMIT},
        "storage": {"root": str(tmp_path_factory.mktemp("outputs"))}, "auth": {"token_env": None},
    })
    try:
        yield start(spec)
    finally:
        serve.shutdown()
        ray.shutdown()


def endless_chunks():
    """A chunked body (no Content-Length) far over the limit."""
    for _ in range(256):  # 4 MB
        yield b"[" * 16_384


def requests_to_send(base: str) -> list[tuple[str, str, object, str | None]]:
    """(kind, path, data, field): field None for a valid request."""
    sent = [("valid", "/v1/generate", body(seed=i, frames=5), None) for i in range(VALID)]
    sent += [("malformed", "/v1/generate", raw, field) for _, raw, field in MALFORMED]
    sent += [("malformed", "/v1/batches", json.dumps(data).encode(), field) for _, data, field in BATCH_MALFORMED]
    sent += [("malformed", "/v1/generate", body(frames="5", steps=True), "frames"),
             ("chunked", "/v1/generate", endless_chunks, "body")]
    random.Random(0).shuffle(sent)
    return sent


def post(base: str, item) -> tuple[str, str | None, requests.Response]:
    kind, path, data, field = item
    payload = data() if callable(data) else data
    headers = {"Content-Type": "application/json", "Accept": "video/mp4"}
    return kind, field, requests.post(f"{base}{path}", data=payload, headers=headers, timeout=120)


def test_valid_requests_get_videos_and_malformed_ones_4xx_amid_each_other(url):
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda item: post(url, item), requests_to_send(url)))
    statuses = [r.status_code for _, _, r in answers]
    valid = [r for kind, _, r in answers if kind == "valid"]
    refused = [(field, r) for kind, field, r in answers if kind != "valid"]
    print(f"\nmixed run: {len(valid)} valid -> {sum(r.status_code == 200 for r in valid)} MP4s; "
          f"{len(refused)} malformed -> {sum(400 <= r.status_code < 500 for _, r in refused)} 4xx; "
          f"5xx: {sum(s >= 500 for s in statuses)}")
    assert not [s for s in statuses if s >= 500]
    assert all(r.status_code == 200 and decode_mp4(r.content).shape == (5, 32, 32, 3) for r in valid)
    for field, r in refused:
        assert 400 <= r.status_code < 500, (field, r.status_code, r.text[:300])
        answer = r.json()
        assert answer["error"].startswith(f"{field}:"), (field, answer)
        assert answer["request_id"] == r.headers["x-videomar-request-id"]
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    after = requests.post(f"{url}/v1/generate", data=body(frames=2), headers={"Accept": "video/mp4"}, timeout=60)
    assert after.status_code == 200 and decode_mp4(after.content).shape[0] == 2
