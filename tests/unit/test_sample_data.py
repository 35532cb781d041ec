"""Sample videos of moving handwritten digits: deterministic for a seed, decodable, captioned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import decord
import numpy as np
import pytest

from videomar.data_pipelines.sample_data import MANIFEST_NAME, draw, write_sample_videos

FRAMES, SIZE = 10, 32


def rows(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / MANIFEST_NAME).read_text().splitlines()]


def frames_of(path: Path) -> np.ndarray:
    return decord.VideoReader(str(path)).get_batch(list(range(FRAMES))).asnumpy()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same seed twice and another seed once: {name: directory}."""
    out = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out[name] = tmp_path_factory.mktemp(name)
        write_sample_videos(out[name], 3, seed=seed, frames=FRAMES, size=SIZE)
    return out


def test_same_seed_same_videos_other_seed_other_videos(written):
    a, b, c = written["a"], written["b"], written["c"]
    assert rows(a) == rows(b)
    for row in rows(a):
        assert (a / row["path"]).read_bytes() == (b / row["path"]).read_bytes()
    assert rows(a) != rows(c)
    assert not np.array_equal(frames_of(a / rows(a)[0]["path"]), frames_of(c / rows(c)[0]["path"]))


def test_videos_decode_with_the_right_shape_and_captions_name_the_digits(written):
    listed = rows(written["a"])
    assert len(listed) == 3 and len({r["path"] for r in listed}) == 3
    for row in listed:
        reader = decord.VideoReader(str(written["a"] / row["path"]))
        assert len(reader) == FRAMES and reader[0].shape == (SIZE, SIZE, 3)
        for digit in row["digits"]:
            assert f"a handwritten {digit['label']} moving " in row["caption"]
        assert row["caption"].count("a handwritten") == len(row["digits"]) >= 1


def test_bright_digits_on_a_black_canvas(written):
    for row in rows(written["a"]):
        video = frames_of(written["a"] / row["path"]).astype(np.float32)
        assert (video < 40).mean() > 0.5, "most of the canvas is black"
        assert video.reshape(FRAMES, -1).max(axis=1).min() > 180, "every frame shows a bright digit"


def test_digits_move_by_fractions_of_a_pixel():
    """A sprite drawn at a fractional position is spread over the pixels it covers: its mass and
    centre follow the position, so a slow digit moves a little in every frame."""
    sprite = np.zeros((6, 6), np.float32)
    sprite[1:5, 2:4] = 1.0
    centres = []
    for x in (3.0, 3.25, 3.5, 3.75, 4.0):
        frame = np.zeros((16, 16), np.float32)
        draw(frame, sprite, x, 2.5)
        assert frame.sum() == pytest.approx(sprite.sum())
        cols = np.arange(16, dtype=np.float32)
        centres.append(float((frame.sum(axis=0) * cols).sum() / frame.sum()))
    np.testing.assert_allclose(np.diff(centres), 0.25, atol=1e-5)
    edge = np.zeros((8, 8), np.float32)
    draw(edge, np.ones((3, 3), np.float32), 5.0, 5.0)  # at the canvas edge: nothing falls off
    assert edge.sum() == 9.0 and edge[5:, 5:].min() == 1.0


def test_sample_data_command(tmp_path):
    cli = [sys.executable, "-m", "videomar.platform.cli", "sample-data"]
    ok = subprocess.run([*cli, "--output", str(tmp_path), "--videos", "2", "--frames", "4", "--size", "16"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert len(rows(tmp_path)) == 2 and all((tmp_path / r["path"]).is_file() for r in rows(tmp_path))
    bad = subprocess.run([*cli, "--output", str(tmp_path / "x"), "--videos", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "videos=0" in bad.stderr
