"""The eval's contact sheet: one row per held-out clip, three groups of frames side by side:
the condition (ground-truth frames the model was given), the model's continuation, and the
ground truth of the same frames.

Frames are upscaled by a whole factor (nearest neighbour) so that small ones are at least about
``TILE`` pixels tall; a header names the groups. ``SheetLayout`` says where every frame goes, so
tests can read a frame back from the PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

# Frames smaller than this (pixels, height) are upscaled by a whole factor to about this size.
TILE = 64
# Pixels between frames of a group, between groups, and between rows; the header's height.
FRAME_GAP = 2
GROUP_GAP = 10
ROW_GAP = 6
HEADER = 16
BACKGROUND = (48, 48, 48)  # grey, so the black canvas of a frame shows where it ends
GROUP_TITLES = ("condition", "generated", "ground truth")


@dataclass(frozen=True)
class SheetLayout:
    """Where each frame of a contact sheet goes: ``rows`` clips of ``frames`` frames, each
    ``height`` x ``width`` pixels before upscaling, the first ``cond`` frames the condition."""

    rows: int
    frames: int
    cond: int
    height: int
    width: int

    @property
    def scale(self) -> int:
        return max(1, TILE // self.height)

    def group_frames(self, group: int) -> int:
        """Frames in group 0 (condition), 1 (generated) or 2 (ground truth)."""
        return self.cond if group == 0 else self.frames - self.cond

    def group_left(self, group: int) -> int:
        step = self.width * self.scale + FRAME_GAP
        return sum(self.group_frames(g) * step - FRAME_GAP + GROUP_GAP for g in range(group))

    def cell(self, row: int, group: int, index: int) -> tuple[int, int]:
        """(top, left) pixel of frame ``index`` of ``group`` in clip ``row``."""
        top = HEADER + row * (self.height * self.scale + ROW_GAP)
        return top, self.group_left(group) + index * (self.width * self.scale + FRAME_GAP)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the whole sheet."""
        return (HEADER + self.rows * (self.height * self.scale + ROW_GAP) - ROW_GAP,
                self.group_left(len(GROUP_TITLES)) - GROUP_GAP)


def draw_sheet(clips: list[np.ndarray], cond: int) -> tuple[np.ndarray, SheetLayout]:
    """``clips``: per row, uint8 [2, T, H, W, 3] (generated, ground truth); the first ``cond``
    frames are the condition (shown from the ground truth). -> (the sheet [h, w, 3] uint8, its layout)."""
    from PIL import Image, ImageDraw

    _, frames, height, width, _ = clips[0].shape
    layout = SheetLayout(len(clips), frames, cond, height, width)
    sheet = np.empty((*layout.size, 3), np.uint8)
    sheet[:] = BACKGROUND
    s = layout.scale
    for row, clip in enumerate(clips):
        generated, truth = clip
        groups = (truth[:cond], generated[cond:], truth[cond:])
        for g, group in enumerate(groups):
            for i, frame in enumerate(group):
                top, left = layout.cell(row, g, i)
                sheet[top:top + height * s, left:left + width * s] = frame.repeat(s, axis=0).repeat(s, axis=1)
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    for g, title in enumerate(GROUP_TITLES):
        draw.text((layout.group_left(g), 2), title, fill=(230, 230, 230))
    return np.asarray(image), layout


def sheet_png(clips: list[np.ndarray], cond: int) -> bytes:
    """``draw_sheet`` as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(draw_sheet(clips, cond)[0]).save(buf, format="PNG")
    return buf.getvalue()
