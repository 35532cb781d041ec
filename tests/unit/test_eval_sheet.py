"""The eval's contact sheet: one row per clip with the condition, the continuation and the ground
truth side by side, every frame where its layout says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from videomar.platform.evaluation.sheet import GROUP_GAP, HEADER, TILE, draw_sheet, sheet_png

pytestmark = pytest.mark.timeout(30)


def clips(rows: int, frames: int, size: int) -> list[np.ndarray]:
    """Per row uint8 [2, T, H, W, 3] (generated, ground truth), every frame a distinct random image."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (2, frames, size, size, 3), dtype=np.uint8) for _ in range(rows)]


def frame_at(sheet: np.ndarray, layout, row: int, group: int, index: int) -> np.ndarray:
    """The frame drawn at a cell, scaled back down (nearest neighbour, so exactly)."""
    top, left = layout.cell(row, group, index)
    s = layout.scale
    return sheet[top:top + layout.height * s:s, left:left + layout.width * s:s]


@pytest.mark.parametrize("cond", [1, 5])
def test_every_frame_is_in_its_group_and_row(cond):
    videos = clips(rows=3, frames=9, size=32)
    sheet, layout = draw_sheet(videos, cond)
    assert sheet.shape == (*layout.size, 3)
    assert layout.scale == TILE // 32 and (layout.rows, layout.frames) == (3, 9)
    for row, (generated, truth) in enumerate(videos):
        for i in range(cond):
            assert np.array_equal(frame_at(sheet, layout, row, 0, i), truth[i])
        for i in range(9 - cond):
            assert np.array_equal(frame_at(sheet, layout, row, 1, i), generated[cond + i])
            assert np.array_equal(frame_at(sheet, layout, row, 2, i), truth[cond + i])
    # The groups follow each other left to right, and the last one ends at the sheet's edge.
    lefts = [layout.group_left(g) for g in range(3)]
    assert lefts[0] == 0 and lefts[0] < lefts[1] < lefts[2]
    last_top, last_left = layout.cell(2, 2, 9 - cond - 1)
    assert last_left + 32 * layout.scale == sheet.shape[1]
    assert last_top + 32 * layout.scale == sheet.shape[0]
    assert lefts[1] - GROUP_GAP == layout.cell(0, 0, cond - 1)[1] + 32 * layout.scale


def test_the_png_holds_the_sheet_with_a_titled_header():
    videos = clips(rows=2, frames=5, size=16)
    sheet, layout = draw_sheet(videos, 1)
    image = np.asarray(Image.open(io.BytesIO(sheet_png(videos, 1))).convert("RGB"))
    assert np.array_equal(image, sheet)
    header = sheet[:HEADER]
    assert (header != header[0, -1]).any()  # the titles are drawn
    assert layout.scale == TILE // 16
