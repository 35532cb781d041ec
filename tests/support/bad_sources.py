"""A source folder holding every kind of bad entry beside good videos, and what listing it must
give: the inputs the precompute must account for (in its shards or its errors table)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

GIF_FRAMES = 12
# entry (relative path) -> a phrase its error must hold
BAD = {
    "gone.mp4": "dangling symbolic link",
    "self.mp4": "dangling symbolic link",  # a link to itself: stat fails (ELOOP)
    "folder.mp4": "folder named like a video",
    "pipe.mp4": "not a regular file",
    "badcap.mp4": "caption file badcap.txt",
}
# Good inputs: each must be listed once, whatever the links leading to it.
GOOD = ("a.mp4", "anim.gif", "folder.mp4/inner.mp4", "sub/b.mp4")


def animated_gif(frames: int = GIF_FRAMES, size: int = 32) -> bytes:
    """An animated GIF, 10 frames per second: a video decord cannot open."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


def write_bad_source(root: Path, good_mp4: Path) -> Path:
    """The folder ``root/source``: GOOD videos, every BAD entry, and links that would list videos
    twice or forever (``sub/loop -> ..``, ``again -> sub``, ``a-link.mp4 -> a.mp4``)."""
    src = root / "source"
    (src / "sub").mkdir(parents=True)
    (src / "folder.mp4").mkdir()
    for rel in ("a.mp4", "sub/b.mp4", "folder.mp4/inner.mp4", "badcap.mp4"):
        shutil.copy(good_mp4, src / rel)
    (src / "a.txt").write_text("a caption\n")
    (src / "badcap.txt").write_bytes(b"\xff\xfe not UTF-8 \xc3")
    (src / "anim.gif").write_bytes(animated_gif())
    (src / "gone.mp4").symlink_to(src / "nowhere.mp4")
    (src / "self.mp4").symlink_to(src / "self.mp4")
    os.mkfifo(src / "pipe.mp4")
    (src / "sub" / "loop").symlink_to("..")
    (src / "again").symlink_to("sub")
    (src / "a-link.mp4").symlink_to("a.mp4")
    return src
