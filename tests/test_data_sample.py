"""`videomar sample-data`: real handwritten digits, moving, captioned, deterministic."""

from __future__ import annotations

import json

import decord
import numpy as np
import pytest

from videomar.data_pipelines.sample_data import plan_video, render, write_sample_videos
from videomar.platform.cli import main


@pytest.mark.timeout(60)
def test_cli_writes_decodable_videos_and_manifest(tmp_path):
    assert main(["sample-data", "--output", str(tmp_path / "a"), "--videos", "3", "--seed", "7"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["caption"].startswith("a handwritten ") and " moving " in row["caption"]
        reader = decord.VideoReader(str(tmp_path / "a" / row["path"]))
        assert len(reader) == row["frames"] == 32
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        assert frames.shape[1:] == (64, 64, 3)
        assert frames.max() > 200 and np.median(frames) < 20  # bright digits on black
        assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 1  # they move
    write_sample_videos(tmp_path / "b", 3, seed=7)
    assert (tmp_path / "b" / "manifest.jsonl").read_text() == (tmp_path / "a" / "manifest.jsonl").read_text()
    assert (tmp_path / "b" / rows[0]["path"]).read_bytes() == (tmp_path / "a" / rows[0]["path"]).read_bytes()


def test_videos_vary_and_captions_match_motion():
    plans = [plan_video(0, i, 16, 64, 8) for i in range(40)]
    assert len({len(p.digits) for p in plans}) >= 2
    assert len({d.size for p in plans for d in p.digits}) > 5
    speeds = [np.hypot(d.vx, d.vy) for p in plans for d in p.digits]
    assert max(speeds) > 2 * min(speeds)
    for p in plans:
        for d in p.digits:
            assert f"a handwritten {d.label} moving" in p.caption
            if "up" in d.direction():
                assert d.vy < 0
            if "left" in d.direction():
                assert d.vx < 0
    frames = render(plans[0])
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render(plan_video(0, 0, 16, 64, 8)))
    assert not np.array_equal(frames, render(plan_video(1, 0, 16, 64, 8)))


def test_bad_arguments_are_refused(tmp_path, capsys):
    assert main(["sample-data", "--output", str(tmp_path), "--videos", "0"]) == 2
    assert "videos=0" in capsys.readouterr().err
