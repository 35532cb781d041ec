"""Clip cutting: start frames, the shared resize + centre crop, pixel layout, and the errors that
name a bad file (decord's DECORDError is not a RuntimeError)."""

from __future__ import annotations

import numpy as np
import pytest

from videomar.data_pipelines import clips
from videomar.data_pipelines.sample_data import write_sample_videos


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    write_sample_videos(root, 1, seed=3, frames=24, size=64)
    return root / "videos" / "00000.mp4"


def test_clip_starts_are_non_overlapping_and_bounded():
    assert clips.clip_starts(24, 5) == [0, 5, 10, 15]
    assert clips.clip_starts(24, 9, stride=2) == [0]  # one clip spans 17 frames
    assert clips.clip_starts(24, 5, max_clips=2, offset=3) == [3, 8]
    assert clips.clip_starts(4, 5) == []
    assert clips.stride_for_fps(24.0, 8.0) == 3 and clips.stride_for_fps(8.0, None, stride=2) == 2


def test_resize_covers_then_crops_the_centre():
    frames = np.zeros((2, 40, 80, 3), np.uint8)  # wide: scaled to 32x64, then 16 columns cut per side
    frames[:, :, 20:60] = 255  # the middle half of the width
    out = clips.resize_crop(frames, 32, 32)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert out[:, :, 1:-1].min() == 255  # the crop lies inside the bright middle
    pixels = clips.to_model_pixels(out)
    assert pixels.shape == (3, 2, 32, 32) and pixels.dtype == np.float32 and pixels.max() == 1.0


def test_read_clip_gives_the_decoded_clip_in_model_layout(video):
    raw = clips.decode_clip(str(video), 10, 5, 2, 32, 32)  # frames 10, 12, ..., 18
    assert raw.shape == (5, 32, 32, 3)
    again = clips.read_clip(str(video), 3, (5, 32, 32), stride=2, start=10)
    np.testing.assert_array_equal(again, clips.to_model_pixels(raw))
    by_index = clips.read_clip(str(video), 1, (5, 32, 32))  # clip 1 of stride 1 starts at frame 5
    np.testing.assert_array_equal(by_index, clips.to_model_pixels(clips.decode_clip(str(video), 5, 5, 1, 32, 32)))
    assert -1.0 <= by_index.min() and by_index.max() <= 1.0


def test_bad_files_raise_errors_that_name_them(video, tmp_path):
    with pytest.raises(clips.VideoTooShort, match=r"00000.mp4: 24 frames, but a clip of 9 frames with stride 3"):
        clips.decode_clip(str(video), 0, 9, 3, 32, 32)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[:2000])
    with pytest.raises(clips.UndecodableVideo, match="truncated.mp4: cannot decode"):
        clips.decode_clip(str(truncated), 0, 5, 1, 32, 32)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(clips.EmptyVideo, match="empty.mp4: empty file"):
        clips.open_video(str(empty))
    with pytest.raises(FileNotFoundError, match="nothing.mp4: no such file"):
        clips.open_video(str(tmp_path / "nothing.mp4"))
