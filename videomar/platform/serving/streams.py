"""POST /v1/streams: one video sent frame by frame while it is made (platform/serving/stream.py
makes it), as a chunked response: fragmented MP4 when the client accepts video/mp4, else a
``multipart/x-mixed-replace`` stream of JPEG (when accepted) or PNG images.

The body is /v1/generate's plus the stream's plan: ``sink``, ``window`` (omitted: keep every
frame), ``prompts`` ([{"frame": F, "prompt": "..."}]: prompt changes at pixel frames), ``cut_at``
(pixel frames where a new scene starts) and ``switch`` (how a prompt change applies: recache,
flush or cut). Limits (serve spec): ``max_stream_frames`` per stream, ``max_streams`` at once per
sampler replica (more get 429), ``stream_idle_timeout_s`` (a replica stops a stream whose frames
nobody takes for that long). A client that disconnects stops its stream: the replica finishes the
frame in hand, closes the session and frees its cache. Serve passes frames on as they come, so
a client that stops reading without disconnecting is bounded by ``max_stream_frames``, not by
the idle timeout.
"""

from __future__ import annotations

import asyncio
import io
import threading
from typing import AsyncIterator, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from videomar.artifacts.fmp4 import FragmentedMp4
from videomar.errors import UserError
from videomar.platform.serving.engine import Engine, Job
from videomar.platform.serving.requests import GenerateRequest, RequestError, to_job
from videomar.platform.serving.stepper import Stepper
from videomar.platform.serving.stream import StreamPlan, stream_video
from videomar.platform.specs.serve import Limits, SamplerDefaults

BOUNDARY = "videomar-frame"
VIDEO_MP4 = "video/mp4"
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}
AHEAD = 4  # frames a replica makes before the client has read them
RETRY_AFTER_S = 10


class PromptAt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    frame: int = Field(ge=0, description="pixel frame from which the prompt applies")
    prompt: str = Field(max_length=2000)


class StreamRequest(GenerateRequest):
    """POST /v1/streams: a /v1/generate body plus what changes while the stream runs."""

    sink: int = Field(default=1, ge=0, le=64, description="latent frames kept as the attention sink")
    window: int | None = Field(default=None, ge=1, le=1024, description="recent latent frames kept; "
                               "omitted: every frame")
    prompts: list[PromptAt] = Field(default_factory=list, max_length=256)
    cut_at: list[int] = Field(default_factory=list, max_length=256)
    switch: Literal["recache", "flush", "cut"] = "recache"


class StreamsBusy(RequestError):
    def __init__(self, limit: int):
        super().__init__(f"streams: {limit} streams running on this replica, the limit; retry later", 429,
                         {"Retry-After": str(RETRY_AFTER_S)})


def to_stream(req: StreamRequest, limits: Limits, defaults: SamplerDefaults, multiple: int,
              request_id: str = "") -> tuple[Job, StreamPlan]:
    """The job and plan of a stream request; RequestError naming the field when they do not fit."""
    stream_limits = limits.model_copy(update={"max_frames": limits.max_stream_frames})
    job = to_job(req, stream_limits, defaults, multiple, "", request_id)
    plan = StreamPlan(req.sink, req.window, tuple((p.frame, p.prompt) for p in req.prompts), tuple(req.cut_at),
                      req.switch)
    try:
        return job, plan.check(job.frames)
    except UserError as err:
        raise RequestError(str(err)) from None


def media_type(accept: str) -> str:
    """video/mp4 or image/jpeg when the client accepts it (in that order), else image/png."""
    accept = accept.lower()
    if VIDEO_MP4 in accept:
        return VIDEO_MP4
    return "image/jpeg" if "image/jpeg" in accept and "image/png" not in accept else "image/png"


def content_type(media: str) -> str:
    return media if media == VIDEO_MP4 else f"multipart/x-mixed-replace; boundary={BOUNDARY}"


class ImageParts:
    """Frames as the parts of a multipart stream, each one image; ``bare``: the images alone (one
    WebSocket message each)."""

    def __init__(self, media: str, bare: bool = False):
        self.media, self.bare = media, bare

    def send(self, frame: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format=FORMATS[self.media])
        data = buf.getvalue()
        if self.bare:
            return data
        head = f"--{BOUNDARY}\r\nContent-Type: {self.media}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        return head + data + b"\r\n"

    def finish(self) -> bytes:
        return b"" if self.bare else f"--{BOUNDARY}--\r\n".encode()

    def close(self) -> None:
        pass


def encoder(media: str, frame: np.ndarray, bare: bool = False):
    """The encoder of a stream whose first frame [H, W, 3] is ``frame``."""
    return FragmentedMp4(frame.shape[1], frame.shape[0]) if media == VIDEO_MP4 else ImageParts(media, bare)


class StreamRunner:
    """A replica's streams: at most ``max_streams`` at once, each made on its own thread and
    handed over a frame at a time; counters for /v1/model."""

    def __init__(self, engine: Engine, max_streams: int, idle_timeout_s: float):
        self.engine, self.max_streams, self.idle_timeout_s = engine, max_streams, idle_timeout_s
        self.active = 0
        self.latent_frames = 0  # made by every stream so far (each stream's frame 0 counted)
        self.stopped = 0  # streams stopped before their end (disconnect, idle client)
        self.switches = 0  # switches that came while streams ran (WebSocket), applied
        self.stepper = Stepper()  # concurrent streams of one shape advance in one batched step

    def stats(self) -> dict:
        return {"active": self.active, "latent_frames_made": self.latent_frames, "stopped_early": self.stopped,
                "live_switches": self.switches,
                "batched_steps": {str(k): v for k, v in sorted(self.stepper.sizes.items())}}

    async def run(self, job: Job, plan: StreamPlan, media: str, control=None, bare: bool = False
                  ) -> AsyncIterator[bytes]:
        """The stream's encoded frames as they are made; ``control`` (a ray.util.queue.Queue of
        (prompt or None, how), or None) carries switches asked for while it runs; ``bare``: each
        image alone (a WebSocket message), not a multipart part."""
        if self.active >= self.max_streams:
            raise StreamsBusy(self.max_streams)
        self.active += 1
        self.stepper.joined(1)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        room = threading.Semaphore(AHEAD)  # frames made and not yet read
        stop = threading.Event()
        loop.run_in_executor(None, self._make, job, plan, (media, bare), control, queue, room, stop, loop)
        done = False
        try:
            while True:
                item = await queue.get()
                if item is None:
                    done = True
                    return
                if isinstance(item, BaseException):
                    raise item
                room.release()
                if item:  # an encoder may hold a frame back (fragments lag one frame)
                    yield item
        finally:
            stop.set()
            room.release(AHEAD)  # a producer waiting for room sees the stop at once
            self.active -= 1
            self.stepper.joined(-1)
            self.stopped += 0 if done else 1

    def _make(self, job, plan, media, control, queue, room, stop, loop) -> None:
        """The producer thread: frames into the queue, None at the end or an exception."""
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        asked = (lambda: self._asked(control)) if control is not None else None
        frames = stream_video(self.engine, job, plan, lambda done, total: self._count(), asked, self.stepper.next)
        out = None
        try:
            for chunk in frames:
                for frame in chunk:
                    if not room.acquire(timeout=self.idle_timeout_s) or stop.is_set():
                        return  # the client stopped reading, or went away
                    out = out or encoder(media[0], frame, media[1])
                    put(out.send(frame))
            put(out.finish())
        except Exception as err:  # noqa: BLE001 -- handed to the request, which fails alone
            put(err)
        finally:
            frames.close()  # closes the session: its cache is freed
            if out is not None:
                out.close()
            put(None)

    def _count(self) -> None:
        self.latent_frames += 1

    def _asked(self, control) -> list:
        items = _drain(control)
        self.switches += len(items)
        return items


def _drain(control) -> list:
    """Every switch waiting in a ray.util.queue.Queue, without blocking."""
    from ray.util.queue import Empty

    items = []
    while True:
        try:
            items.append(control.get_nowait())
        except Empty:
            return items


async def open_stream(sampler, job: Job, plan: StreamPlan, media: str):
    """The ingress side: start the stream on a sampler replica and answer with its frames as
    they come. A refusal on the replica (429) is raised before any byte is sent; a client that
    goes away cancels the replica's stream."""
    from fastapi.responses import StreamingResponse

    parts = sampler.options(stream=True).stream.remote(job, plan, media)
    try:
        first = await parts.__anext__()
    except Exception as err:  # Ray wraps what the replica raised
        cause = getattr(err, "cause", err)
        if isinstance(cause, RequestError):
            raise cause from None
        raise

    async def body():
        try:
            yield first
            async for item in parts:
                yield item
        finally:
            parts.cancel()  # a disconnect stops the replica's work

    return StreamingResponse(body(), media_type=content_type(media),
                             headers={"x-videomar-frames": str(job.frames), "x-videomar-seed": str(job.seed)})
