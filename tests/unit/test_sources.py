"""Listing sources: every entry the user pointed at is an input or a named problem; links to
folders are followed once; manifest paths stay in the manifest's folder; GIFs decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.bad_sources import BAD, GIF_FRAMES, GOOD, animated_gif, write_bad_source
from videomar.data_pipelines.clips import UndecodableVideo, open_video, read_frames
from videomar.data_pipelines.sources import list_sources
from videomar.data_pipelines.stages import ClipParams, decode_source


@pytest.fixture
def good_mp4(tmp_path) -> Path:
    from videomar.data_pipelines.sample_data import write_sample_videos

    return write_sample_videos(tmp_path / "sample", 1, frames=10).parent / "videos" / "00000.mp4"


def test_a_folder_of_bad_entries_lists_each_input_once_and_every_problem(tmp_path, good_mp4):
    src = write_bad_source(tmp_path, good_mp4)
    listed = list_sources(str(src))
    names = [s.name for s in listed]
    assert len(names) == len(set(names)) and set(names) == set(GOOD) | set(BAD)  # no loop, no duplicate
    for s in listed:
        assert (BAD[s.name] in s.problem) if s.name in BAD else not s.problem, (s.name, s.problem)
    by_name = {s.name: s for s in listed}
    assert by_name["a.mp4"].caption == "a caption"


def test_listing_problems_become_error_rows(tmp_path, good_mp4):
    src = write_bad_source(tmp_path, good_mp4)
    params = ClipParams(buckets=((5, 32, 32),))
    for s in list_sources(str(src)):
        rows = list(decode_source(s.row(), params))
        if s.name in BAD:
            assert [(r["status"], r["error_stage"], r["error_class"]) for r in rows] == [("error", "list", "SourceProblem")]
            assert BAD[s.name] in rows[0]["error_message"]
        else:
            assert rows and {r["status"] for r in rows} == {"clip"}, (s.name, rows[0]["error_message"])


def test_manifest_paths_outside_its_folder_are_refused_unless_allowed(tmp_path, good_mp4):
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "data" / "m.jsonl"
    rows = [{"path": str(good_mp4)}, {"path": "../../etc/hostname"}, {"path": "ok.mp4"}, {"caption": "no path"},
            {"path": "ok.mp4", "start": "x"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = sorted(s.problem.split(":")[0] for s in list_sources(str(manifest)) if s.problem)
    assert problems == sorted([str(good_mp4), "../../etc/hostname", "row 4 has no 'path'", "row 5"])
    allowed = [s.problem for s in list_sources(str(manifest), outside_manifest=True) if s.problem]
    assert len(allowed) == 2  # the row without a path and the bad start remain


def test_an_animated_gif_is_decoded_by_the_second_decoder(tmp_path):
    gif = tmp_path / "anim.gif"
    gif.write_bytes(animated_gif())
    for source in (str(gif), gif.read_bytes()):
        reader = open_video(source)
        assert len(reader) == GIF_FRAMES and reader.get_avg_fps() == pytest.approx(10.0)
        frames = read_frames(reader, 2, 3, 2, str(gif))
        assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(UndecodableVideo, match=r"noise.mp4: cannot decode as a video \(decord: .*; PyAV: "):
        open_video(str(tmp_path / "noise.mp4"))
