"""A video made frame by frame on a stage export (platform/serving/stream.py) and the streaming
flags of ``videomar generate``."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4, png_b64
from videomar.errors import UserError
from videomar.platform.cli import main as cli
from videomar.platform.serving.engine import Engine, Job
from videomar.platform.serving.requests import image_from_bytes
from videomar.platform.serving.stream import StreamPlan, parse_prompts, stream_video


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    overrides = {"latent_channels": 4, "head": {"sample_steps": 4, "x0_clip": 3.0}}
    return write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage"), overrides=overrides, noisy=True)


@pytest.fixture(scope="module")
def engine(export):
    return Engine.load(export, device="cpu")


def job(engine, frames=9, seed=3) -> Job:
    image = image_from_bytes(base64.b64decode(png_b64(32, 32)), "image", None, engine.spatial_multiple)
    return Job(image=image, prompt="a ball", frames=frames, steps=3, cfg=2.0, temperature=None, seed=seed)


def test_a_streamed_video_equals_the_offline_one_and_comes_in_chunks(engine):
    offline = engine.run([job(engine)])[0]  # [9, 32, 32, 3]
    seen = []
    chunks = list(stream_video(engine, job(engine), StreamPlan(), lambda done, total: seen.append(done)))
    assert [len(c) for c in chunks] == [1, 4, 4]  # frame 0, then 4 pixel frames per latent frame
    streamed = np.concatenate(chunks)
    assert streamed.shape == offline.shape
    assert np.abs(streamed.astype(int) - offline.astype(int)).max() <= 1  # uint8 rounding at most
    assert seen == [1, 5, 9]


def test_switches_and_cuts_change_the_video_after_them(engine):
    plain = np.concatenate(list(stream_video(engine, job(engine, 13), StreamPlan(1, 2))))
    plan = StreamPlan(1, 2, prompts=((5, "a cube"),), cuts=(9,), switch="flush")
    switched = np.concatenate(list(stream_video(engine, job(engine, 13), plan)))
    assert switched.shape == plain.shape == (13, 32, 32, 3)
    assert np.array_equal(switched[:5], plain[:5])  # latent frames 0 and 1 come before the switch
    assert not np.array_equal(switched[5:], plain[5:])


@pytest.mark.parametrize("plan, frames, field", [
    (StreamPlan(prompts=((20, "x"),)), 9, "prompts"),
    (StreamPlan(cuts=(9,)), 9, "cut_at"),
    (StreamPlan(cuts=(0,)), 9, "cut_at"),
    (StreamPlan(1, 0), 9, "window"),
    (StreamPlan(-1, 2), 9, "sink"),
    (StreamPlan(switch="rewind"), 9, "switch"),
    (StreamPlan(prompts=((4, "a"), (2, "b"))), 9, "prompts"),
])
def test_bad_plans_name_the_field(plan, frames, field):
    with pytest.raises(UserError, match=field):
        plan.check(frames)


def test_prompt_schedules_parse_or_are_named():
    assert parse_prompts("0:a 3 moving left;60:a 3 moving up") == ((0, "a 3 moving left"), (60, "a 3 moving up"))
    with pytest.raises(UserError, match="--prompts"):
        parse_prompts("zero:a 3")


def test_videomar_generate_streams_with_a_window_prompts_and_a_cut(export, tmp_path, capfd):
    image = tmp_path / "cond.png"
    image.write_bytes(base64.b64decode(png_b64(32, 32)))
    out = tmp_path / "long.mp4"
    args = ["generate", "--export", export, "--image", str(image), "--frames", "41", "--out", str(out),
            "--steps", "2", "--sink", "1", "--window", "2", "--prompts", "0:a ball left;12:a ball up",
            "--cut-at", "24"]
    assert cli(args) == 0
    assert decode_mp4(out.read_bytes()).shape == (41, 32, 32, 3)
    shown = capfd.readouterr().out  # the console's lines (written to descriptor 1)
    assert "frames 41/41" in shown and "frames 1/41" in shown  # progress as the frames are made
    assert cli([*args[:-1], "99"]) == 2
    assert "--cut-at" in capfd.readouterr().err


def test_a_replica_stream_stops_when_its_client_goes_away(engine):
    import asyncio

    from videomar.platform.serving.streams import StreamRunner, StreamsBusy

    runner = StreamRunner(engine, max_streams=1, idle_timeout_s=20)

    async def scenario():
        parts = runner.run(job(engine, frames=397), StreamPlan(1, 2), "image/png")
        first = await parts.__anext__()
        with pytest.raises(StreamsBusy, match="streams"):  # one stream at a time here
            await runner.run(job(engine), StreamPlan(), "image/png").__anext__()
        await parts.aclose()  # what a disconnect does to the replica's generator
        return first

    first = asyncio.run(scenario())
    assert first.startswith(b"--videomar-frame\r\nContent-Type: image/png\r\n")
    # asyncio.run waited for the producer thread to end: it stopped long before the 100 latent frames.
    assert runner.latent_frames < 10
    assert runner.stats()["active"] == 0 and runner.stats()["stopped_early"] == 1


@pytest.mark.parametrize("media", ["video/mp4", "image/jpeg"])
def test_a_replica_stream_encodes_fragmented_mp4_or_images(engine, media):
    import asyncio

    from videomar.platform.serving.streams import StreamRunner

    async def collect():
        return [p async for p in StreamRunner(engine, 1, 20).run(job(engine), StreamPlan(), media)]

    parts = asyncio.run(collect())
    data = b"".join(parts)
    if media == "video/mp4":
        assert len(parts) > 2 and data[4:8] == b"ftyp" and b"moof" in data  # fragments, as they come
        assert decode_mp4(data).shape == (9, 32, 32, 3)
    else:
        assert data.count(b"Content-Type: image/jpeg") == 9 and data.endswith(b"--videomar-frame--\r\n")


def test_concurrent_replica_streams_advance_in_batched_steps(engine):
    import asyncio

    from videomar.platform.serving.streams import StreamRunner

    runner = StreamRunner(engine, max_streams=2, idle_timeout_s=20)
    jobs = [job(engine, frames=17, seed=1), job(engine, frames=17, seed=2)]

    async def both():
        async def one(j):
            return [p async for p in runner.run(j, StreamPlan(1, 2), "image/png")]
        return await asyncio.gather(*(one(j) for j in jobs))

    together = asyncio.run(both())
    assert runner.stats()["batched_steps"].get("2", 0) >= 2  # most steps made both streams' frames
    for j, parts in zip(jobs, together):
        alone = np.concatenate(list(stream_video(engine, j, StreamPlan(1, 2))))
        images = [np.asarray(Image.open(io.BytesIO(p.split(b"\r\n\r\n", 1)[1]))) for p in parts[:-1]]
        assert np.abs(np.stack(images).astype(int) - alone.astype(int)).max() <= 1
