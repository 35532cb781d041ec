"""Fragmented MP4 written as frames come: H.264 (yuv420p) from ffmpeg with an empty moov and one
fragment per frame (every frame a keyframe), so a player can start before the video's end."""

from __future__ import annotations

import queue
import subprocess
import threading

import numpy as np

from videomar.artifacts.media import DEFAULT_FPS, h264_command


class FragmentedMp4:
    """``send(frame)`` [H, W, 3] uint8 returns the bytes ffmpeg has written so far (fragments lag
    a frame behind); ``finish()`` the rest; ``close()`` ends ffmpeg whatever happened."""

    def __init__(self, width: int, height: int, fps: int = DEFAULT_FPS):
        cmd = h264_command(width, height, fps, "-tune", "zerolatency", "-g", "1",
                           "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "-")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.out: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)  # a full pipe would block ffmpeg
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(1 << 16):
            self.out.put(chunk)

    def _ready(self) -> bytes:
        chunks = []
        while not self.out.empty():
            chunks.append(self.out.get_nowait())
        return b"".join(chunks)

    def send(self, frame: np.ndarray) -> bytes:
        self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        self.proc.stdin.flush()
        return self._ready()

    def finish(self) -> bytes:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        return self._ready()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
