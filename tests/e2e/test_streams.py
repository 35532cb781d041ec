"""POST /v1/streams over real HTTP on loopback (Ray Serve): frames arrive while the video is still
being made, a client that goes away stops the work, limits and bad requests get 4xx naming the
field, and the same bearer token guards it. Serve starts once for the module."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import requests
from PIL import Image

from tests.support.served import served
from tests.support.videos import decode_mp4, png_b64

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TOKEN = "stream-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LONG = 397  # pixel frames: 99 latent frames after the image


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with served(tmp_path_factory, TOKEN, {
        "defaults": {"steps": 2},
        "limits": {"max_frames": 17, "max_stream_frames": LONG, "max_streams": 1, "stream_idle_timeout_s": 20},
    }) as base:
        yield base


def body(**over):
    return {"image": png_b64(), "frames": 9, "prompt": "a red ball", "seed": 7, **over}


def parts(response):
    """The images of a multipart/x-mixed-replace response, each as it arrives: (media, bytes)."""
    buf = b""
    for data in response.iter_content(chunk_size=None):
        buf += data
        while b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
            size = int(fields["Content-Length"])
            if len(rest) < size + 2:
                break
            yield fields["Content-Type"], rest[:size]
            buf = rest[size + 2:]


def streams(url) -> dict:
    return requests.get(f"{url}/v1/model", headers=AUTH, timeout=30).json()["stats"]["streams"]


def test_frames_arrive_while_the_stream_is_made(url):
    plan = {"window": 2, "prompts": [{"frame": 9, "prompt": "a cube"}], "cut_at": [81]}
    with requests.post(f"{url}/v1/streams", json=body(frames=161, steps=16, **plan), headers=AUTH, stream=True,
                       timeout=60) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        got = parts(r)
        media, first = next(got)
        assert streams(url)["active"] == 1  # the first frame is out, the last not yet made
        frames = [first] + [data for _, data in got]
    assert media == "image/png" and len(frames) == 161
    assert np.asarray(Image.open(io.BytesIO(frames[-1]))).shape == (32, 32, 3)
    with requests.post(f"{url}/v1/streams", json=body(), headers={**AUTH, "Accept": "image/jpeg"}, stream=True,
                       timeout=60) as r:
        assert [m for m, _ in parts(r)] == ["image/jpeg"] * 9
    with requests.post(f"{url}/v1/streams", json=body(), headers={**AUTH, "Accept": "video/mp4"}, timeout=60) as r:
        assert r.headers["content-type"] == "video/mp4" and decode_mp4(r.content).shape == (9, 32, 32, 3)


def test_a_disconnect_stops_the_work_and_frees_the_slot(url):
    before = streams(url)
    r = requests.post(f"{url}/v1/streams", json=body(frames=LONG, steps=16, window=2), headers=AUTH, stream=True,
                      timeout=60)
    got = parts(r)  # kept: a generator dropped here would close the connection
    next(got)
    busy = requests.post(f"{url}/v1/streams", json=body(), headers=AUTH, timeout=60)
    assert busy.status_code == 429 and busy.json()["error"].startswith("streams:")  # max_streams is 1
    r.close()
    deadline = time.monotonic() + 60
    while streams(url)["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    after = streams(url)
    assert after["active"] == 0 and after["stopped_early"] == before["stopped_early"] + 1
    time.sleep(1)
    made = streams(url)["latent_frames_made"] - before["latent_frames_made"]
    assert made < 1 + (LONG - 1) // 4  # it stopped before making the whole video, and stays stopped
    assert streams(url)["latent_frames_made"] - before["latent_frames_made"] == made


@pytest.mark.parametrize("over, field", [
    ({"window": 0}, "window"),
    ({"cut_at": [99]}, "cut_at"),
    ({"frames": LONG + 1}, "frames"),
    ({"prompts": [{"frame": "9", "prompt": "x"}]}, "prompts"),
    ({"switch": "rewind"}, "switch"),
    ({"sink": -1}, "sink"),
])
def test_bad_stream_requests_get_4xx_naming_the_field(url, over, field):
    r = requests.post(f"{url}/v1/streams", json=body(**over), headers=AUTH, timeout=30)
    assert r.status_code == 422 and r.json()["error"].startswith(field), r.text


def test_streams_need_the_token(url):
    r = requests.post(f"{url}/v1/streams", json=body(), timeout=30)
    assert r.status_code == 401


def test_a_websocket_stream_takes_switches_and_cuts_while_it_runs(url):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    socket = url.replace("http://", "ws://") + "/v1/streams"
    before = streams(url)["live_switches"]
    with connect(socket, additional_headers=AUTH) as ws:
        ws.send(json.dumps({**body(frames=41, steps=16, window=2), "media": "image/jpeg"}))
        assert json.loads(ws.recv()) == {"frames": 41, "seed": 7}
        first = ws.recv()
        assert Image.open(io.BytesIO(first)).format == "JPEG"
        ws.send(json.dumps({"prompt": "a blue cube", "how": "recache"}))
        ws.send(json.dumps({"how": "rewind"}))  # refused, the stream goes on
        ws.send(json.dumps({"how": "cut"}))
        messages = [first]
        while not (isinstance(messages[-1], str) and "done" in messages[-1]):
            messages.append(ws.recv(timeout=60))
    images = [m for m in messages if isinstance(m, bytes)]
    notes = [json.loads(m) for m in messages if isinstance(m, str)]
    assert len(images) == 41 and notes[-1] == {"done": True}
    assert any(n.get("error", "").startswith("how") for n in notes)
    assert streams(url)["live_switches"] - before == 2
    with connect(socket, additional_headers=AUTH) as ws:
        ws.send(json.dumps(body(window=0)))
        assert json.loads(ws.recv())["error"].startswith("window")
    with pytest.raises(InvalidStatus):  # no token: the handshake is refused
        connect(socket)
