"""The WebSocket on /v1/streams: a stream whose prompt changes and cuts come while it runs.

    client -> {POST /v1/streams body, "media": "image/png" | "image/jpeg"}   (first message)
    server -> {"frames": N, "seed": S}, then one binary message per frame (the image), as made
    client -> {"prompt": "a 3 moving up", "how": "recache" | "flush" | "cut"} at any time:
              applied before the next latent frame; {"how": "cut"} alone starts a new scene
    server -> {"done": true} after the last frame, then closes (code 1000)

The same bearer token as every endpoint guards the handshake (refused with close code 1008). A
bad first message is answered {"error": "<field>: ..."} and closed with 1008; a bad control
message is answered {"error": ...} and the stream goes on. Closing the socket stops the stream.
Switches travel to the replica that makes the stream through a queue actor of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from videomar.platform.serving.requests import RequestError, validate

POLICY_VIOLATION = 1008


class SocketStart(BaseModel):
    """The first message: a stream request and the image format of the frames."""

    model_config = ConfigDict(extra="allow")

    media: Literal["image/png", "image/jpeg"] = "image/png"


class Switch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str | None = Field(default=None, max_length=2000)
    how: Literal["recache", "flush", "cut"] = "recache"


async def serve_socket(websocket, api) -> None:
    """Run one WebSocket stream for the ingress ``api`` (its sampler handle, settings, token)."""
    from ray.util.queue import Queue

    from videomar.platform.serving.streams import StreamRequest, to_stream

    # Browsers do not apply CORS to WebSockets: the Host check stops a rebinding page's socket.
    if not api.s.hosts.allows(websocket.headers.get("host")):
        await websocket.close(code=POLICY_VIOLATION, reason="host: not a name this service answers to")
        return
    if not api.s.token.allows(websocket.headers.get("authorization")):
        await websocket.close(code=POLICY_VIOLATION, reason="authorization: missing or wrong bearer token")
        return
    await websocket.accept()
    try:
        start = await websocket.receive_json()
        media = validate(SocketStart, start).media
        req = validate(StreamRequest, {k: v for k, v in start.items() if k != "media"})
        job, plan = to_stream(req, api.s.limits, api.s.defaults, await api._multiple(), uuid.uuid4().hex[:16])
    except (RequestError, ValueError) as err:  # a ValueError: the message is not JSON
        await websocket.send_json({"error": str(err)})
        await websocket.close(code=POLICY_VIOLATION)
        return
    control = Queue(actor_options={"num_cpus": 0})
    parts = api.sampler.options(stream=True).stream.remote(job, plan, media, control, True)
    listener = asyncio.create_task(_listen(websocket, control, parts))
    try:
        await websocket.send_json({"frames": job.frames, "seed": job.seed})
        async for image in parts:
            await websocket.send_bytes(image)
        await websocket.send_json({"done": True})
        await websocket.close()
    except Exception as err:  # noqa: BLE001 -- a disconnect, or the replica refused (429) or failed
        cause = getattr(err, "cause", err)
        if isinstance(cause, RequestError):
            with contextlib.suppress(Exception):
                await websocket.send_json({"error": str(cause)})
                await websocket.close(code=POLICY_VIOLATION)
    finally:
        parts.cancel()  # the replica stops making frames nobody reads
        listener.cancel()
        control.shutdown()


async def _listen(websocket, control, parts) -> None:
    """Switches from the client into the stream's queue; bad ones are answered, not applied. A
    client that goes away cancels the stream at once, even while a frame is being made."""
    from starlette.websockets import WebSocketDisconnect

    while True:
        try:
            message = await websocket.receive_json()
        except (WebSocketDisconnect, RuntimeError):
            parts.cancel()
            return
        except ValueError:
            await websocket.send_json({"error": "message: not JSON"})
            continue
        try:
            switch = validate(Switch, message)
        except RequestError as err:
            await websocket.send_json({"error": str(err)})
            continue
        await control.put_async((switch.prompt, switch.how))

