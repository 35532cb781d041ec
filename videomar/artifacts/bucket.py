"""A bucket: one clip shape of a curriculum, (frames, height, width) in pixels. The one type
wherever a bucket is meant; a plain 3-tuple compares and hashes equal to it."""

from __future__ import annotations

from typing import Any, NamedTuple


class Bucket(NamedTuple):
    frames: int  # pixel frames per clip (1 = images)
    height: int
    width: int

    @property
    def key(self) -> str:
        """``FxHxW``: how manifests, shard folders and messages name the bucket."""
        return f"{self.frames}x{self.height}x{self.width}"

    @classmethod
    def of(cls, value: Any) -> "Bucket":
        """A Bucket from a Bucket or 3-sequence, a {frames, height, width} mapping, or anything
        with those attributes (a spec's bucket section, a manifest's bucket entry)."""
        if isinstance(value, dict):
            return cls(int(value["frames"]), int(value["height"]), int(value["width"]))
        if hasattr(value, "frames"):
            return cls(int(value.frames), int(value.height), int(value.width))
        frames, height, width = value
        return cls(int(frames), int(height), int(width))
