"""The second decoder: PyAV (FFmpeg), for the files decord cannot open (animated GIF first).

decord only reads containers with a seekable video index, so a GIF, which is a perfectly good
video, would be declared undecodable. Before that verdict ``open_video`` tries PyAV, which decodes
the whole file once into memory and answers the same three calls decord's VideoReader does
(``len``, ``get_avg_fps``, ``get_batch(indices).asnumpy()``). The frames are capped, so a long
file in an odd format cannot fill the worker's memory.
"""

from __future__ import annotations

import io

import numpy as np

MAX_FRAMES = 4096  # frames the fallback holds in memory; longer files are refused, named
DEFAULT_FPS = 10.0  # a GIF without frame durations


class FramesReader:
    """Decoded frames with decord's reader interface: uint8 [T, H, W, 3]."""

    def __init__(self, frames: np.ndarray, fps: float):
        self.frames, self.fps = frames, fps

    def __len__(self) -> int:
        return len(self.frames)

    def get_avg_fps(self) -> float:
        return self.fps

    def get_batch(self, indices: list[int]) -> "FramesReader":
        return FramesReader(self.frames[indices], self.fps)

    def asnumpy(self) -> np.ndarray:
        return self.frames


def open_with_pyav(source: str | bytes, where: str) -> FramesReader:
    """Every frame of the first video stream; ValueError naming ``where`` when there is none,
    too many, or PyAV cannot decode them (av.FFmpegError is an OSError or ValueError)."""
    import av

    with av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as container:
        if not container.streams.video:
            raise ValueError(f"{where}: no video stream")
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            if len(frames) == MAX_FRAMES:
                raise ValueError(f"{where}: more than {MAX_FRAMES} frames for the second decoder")
            frames.append(frame.to_ndarray(format="rgb24"))  # [H, W, 3] uint8
            times.append(frame.time)
    if not frames:
        raise ValueError(f"{where}: no frame could be decoded")
    return FramesReader(np.stack(frames), frame_rate(times, stream.average_rate))


def frame_rate(times: list[float | None], average_rate) -> float:
    """Frames per second from the frames' timestamps, else the stream's declared rate."""
    known = [t for t in times if t is not None]
    if len(known) > 1 and known[-1] > known[0]:
        return (len(known) - 1) / (known[-1] - known[0])
    return float(average_rate) if average_rate else DEFAULT_FPS
