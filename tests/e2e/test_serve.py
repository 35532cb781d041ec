"""The Serve application over real HTTP on loopback: videos, seeds, batching, bad input, auth,
and /v1/batches writing to a real S3 server. Serve starts once for the module."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support.ray_local import local_ray
from videomar.platform.processes import free_port
from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4, png_b64
from videomar.artifacts import storage
from videomar.platform.serving.auth import TokenCheck, digest
from videomar.platform.jobs import parse_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TOKEN = "s3cret-token-for-tests"
MP4 = {"Accept": "video/mp4"}


@pytest.fixture(scope="module")
def service(s3_server, tmp_path_factory):
    """A fresh local Ray (started after the S3 variables are set, so replicas see them) with
    two apps: the open one at / and a token-protected one at /secure."""
    import ray
    from ray import serve

    from videomar.platform.serving.app import start

    export = write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage"))
    ray.shutdown()
    local_ray()
    spec = parse_spec({
        "kind": "serve", "export": export,
        "http": {"host": "127.0.0.1", "port": free_port()},
        "deployment": {"max_batch_size": 8, "max_ongoing_requests": 32, "batch_wait_timeout_s": 0.2},
        "defaults": {"steps": 4},
        "limits": {"max_frames": 17, "max_height": 64, "max_width": 64, "max_body_bytes": 200_000,
                   "max_batch_inputs": 8},
        "storage": {"root": s3_server.uri("serve-root")},
        "auth": {"token_env": None},
    })
    try:
        url = start(spec)
        secure = spec.model_copy(update={"app_name": "secure"})
        secure_url = start(secure, route_prefix="/secure", token=TokenCheck(digest(TOKEN)))
        yield {"url": url, "secure": secure_url, "s3": s3_server}
    finally:
        serve.shutdown()
        ray.shutdown()


def body(**over):
    return {"image": png_b64(), "frames": 6, "prompt": "a red ball", "seed": 7, **over}


def test_valid_request_gives_mp4_with_requested_frames(service):
    r = requests.post(f"{service['url']}/v1/generate", json=body(frames=6), headers=MP4, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    frames = decode_mp4(r.content)
    assert frames.shape == (6, 32, 32, 3)
    assert r.headers["x-videomar-frames"] == "6" and r.headers["x-videomar-seed"] == "7"

    r = requests.post(f"{service['url']}/v1/generate", json=body(frames=9), timeout=60)  # JSON answer
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["frames"] == 9 and out["media_type"] == "video/mp4"
    assert decode_mp4(base64.b64decode(out["video"])).shape == (9, 32, 32, 3)


def test_same_seed_gives_same_video_and_another_seed_does_not(service):
    def video(seed):
        r = requests.post(f"{service['url']}/v1/generate", json=body(seed=seed), headers=MP4, timeout=60)
        assert r.status_code == 200, r.text
        return decode_mp4(r.content)

    first, again, other = video(11), video(11), video(12)
    assert (first == again).all()
    assert not (first == other).all()


def test_32_concurrent_requests_succeed_and_are_batched(service):
    def one(i):
        payload = body(seed=i, frames=5, cfg=1.0 + i % 4, image=png_b64(seed=i % 3))
        return requests.post(f"{service['url']}/v1/generate", json=payload, headers=MP4, timeout=120)

    alone = decode_mp4(one(5).content)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert [r.status_code for r in answers] == [200] * 32
    videos = [decode_mp4(r.content) for r in answers]
    assert all(v.shape == (5, 32, 32, 3) for v in videos)
    # Request 5 batched with others of other seeds, cfgs and images: its video alone, up to
    # float rounding (and the codec).
    assert np.abs(videos[5].astype(int) - alone.astype(int)).mean() < 1.0
    stats = requests.get(f"{service['url']}/v1/model", timeout=30).json()["stats"]
    assert max(int(k) for k in stats["batch_sizes"]) > 1, stats
    assert max(int(k) for k in stats["sampler_call_sizes"]) > 1, stats


def test_model_endpoint_documents_units_limits_and_training(service):
    info = requests.get(f"{service['url']}/v1/model", timeout=30).json()
    assert info["preset"] == "tiny"
    assert info["trained_bucket"] == {"frames": 9, "height": 32, "width": 32}
    assert "condition image is frame 0" in info["frames_unit"]
    assert info["image_size_policy"].startswith("rejected")
    assert info["limits"]["max_frames"] == 17 and info["spatial_multiple"] == 8


MALFORMED = [
    ("malformed JSON", b"{not json", 422, "body"),
    ("bad base64", body(image="%%%not-base64%%%"), 422, "image"),
    ("not an image", body(image=base64.b64encode(b"hello, world").decode()), 422, "image"),
    ("GIF not PNG/JPEG", body(image=png_b64(fmt="GIF")), 422, "image"),
    ("size not a multiple", body(image=png_b64(30, 30)), 422, "image: 30x30"),
    ("size over the limit", body(image=png_b64(128, 128)), 422, "image: 128x128"),
    ("frames over the limit", body(frames=18), 422, "frames"),
    ("negative frames", body(frames=-3), 422, "frames"),
    ("missing frames", {k: v for k, v in body().items() if k != "frames"}, 422, "frames"),
    ("missing image", {k: v for k, v in body().items() if k != "image"}, 422, "image"),
    ("negative seed", body(seed=-1), 422, "seed"),
    ("cfg below 1", body(cfg=0.5), 422, "cfg"),
    ("negative temperature", body(temperature=-1.0), 422, "temperature"),
    ("steps over the limit", body(steps=1000), 422, "steps"),
    ("unknown field", body(colour="red"), 422, "colour"),
    ("body over the limit", body(image=png_b64(256, 256)), 413, "body"),
]


def test_each_malformed_input_gets_4xx_naming_the_field_and_service_keeps_serving(service):
    url = f"{service['url']}/v1/generate"
    for name, payload, status, field in MALFORMED:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        r = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"].startswith(field), (name, r.json())
        ok = requests.post(url, json=body(frames=2), headers=MP4, timeout=60)
        assert ok.status_code == 200, (name, ok.text)
    assert decode_mp4(ok.content).shape[0] == 2


def test_token_is_required_everywhere_but_healthz(service):
    url = service["secure"]
    assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = requests.get(f"{url}/v1/model", headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert requests.post(f"{url}/v1/generate", json=body(), headers=headers, timeout=30).status_code == 401
        assert requests.get(f"{url}/v1/batches/{'0' * 32}", headers=headers, timeout=30).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{url}/v1/model", headers=good, timeout=30).status_code == 200
    r = requests.post(f"{url}/v1/generate", json=body(frames=3), headers={**good, **MP4}, timeout=60)
    assert r.status_code == 200 and decode_mp4(r.content).shape[0] == 3


def test_batches_write_one_video_per_input_to_s3(service):
    url = service["url"]
    inputs = [body(seed=i, frames=3 + i) for i in range(3)]
    r = requests.post(f"{url}/v1/batches", json={"inputs": inputs, "output_prefix": "runs/one"}, timeout=60)
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["output_prefix"] == service["s3"].uri("serve-root", "runs", "one")
    deadline = time.monotonic() + 120
    while True:
        status = requests.get(f"{url}/v1/batches/{batch['id']}", timeout=30).json()
        if status["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["status"] == "succeeded", status
    assert status["done"] == 3 and status["progress"] == 1.0
    listed = storage.list_dir(batch["output_prefix"])
    assert listed == status["outputs"] == [storage.join(batch["output_prefix"], f"{i:06d}.mp4") for i in range(3)]
    for i, uri in enumerate(listed):
        assert decode_mp4(storage.read_bytes(uri)).shape[0] == 3 + i


@pytest.mark.parametrize("prefix", ["../escape", "/abs/path", "s3://other-bucket/x", "a/../../b", "_batches/x"])
def test_batch_output_prefix_cannot_leave_the_root(service, prefix):
    r = requests.post(f"{service['url']}/v1/batches", json={"inputs": [body()], "output_prefix": prefix}, timeout=30)
    assert r.status_code == 422 and r.json()["error"].startswith("output_prefix"), r.text


def test_batch_errors_name_the_input_and_unknown_ids_are_404(service):
    url = service["url"]
    r = requests.post(f"{url}/v1/batches", json={"inputs": [body(), body(frames=99)]}, timeout=30)
    assert r.status_code == 422 and r.json()["error"].startswith("inputs.1.frames"), r.text
    r = requests.post(f"{url}/v1/batches", json={"inputs": [body()] * 9}, timeout=30)
    assert r.status_code == 422 and r.json()["error"].startswith("inputs"), r.text
    assert requests.get(f"{url}/v1/batches/{'a' * 32}", timeout=30).status_code == 404
    assert requests.get(f"{url}/v1/batches/not-an-id", timeout=30).status_code == 422
