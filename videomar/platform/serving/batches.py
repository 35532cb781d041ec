"""POST /v1/batches and GET /v1/batches/{id}: many inputs, one MP4 per input in storage.

Outputs go to ``<root>/<output_prefix>/<index>.mp4`` (default prefix ``batches/<id>``), where
``root`` is the service's configured storage root (local path or s3://) and ``output_prefix`` is
a relative path of plain segments: no ``..``, no absolute paths, no URIs, so a client cannot
write outside the root. The batch status (progress, output URIs, per-input errors) is a JSON
document at ``<root>/_batches/<id>.json``, rewritten atomically as inputs finish, so any ingress
replica can answer GET. A batch whose service stops mid-way stays ``running`` in its status.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable

from videomar.artifacts import storage
from videomar.platform.serving.engine import Job, log
from videomar.platform.serving.requests import MAX_PREFIX_SEGMENTS, RequestError

STATUS_DIR = "_batches"
DEFAULT_PREFIX = "batches"
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
BATCH_ID = re.compile(r"^[0-9a-f]{32}$")


def output_prefix(root: str, prefix: str | None, batch_id: str) -> str:
    """The URI below ``root`` where a batch writes; RequestError for anything that could escape."""
    if prefix is None:
        return storage.join(root, DEFAULT_PREFIX, batch_id)
    parts = [p for p in prefix.strip().strip("/").split("/") if p]
    if len(parts) > MAX_PREFIX_SEGMENTS:
        raise RequestError(f"output_prefix: {len(parts)} segments; at most {MAX_PREFIX_SEGMENTS}")
    bad = "://" in prefix or prefix.startswith(("/", "\\", "~")) or not parts
    if bad or any(not SEGMENT.match(p) or p.startswith(STATUS_DIR) for p in parts):
        raise RequestError(
            "output_prefix: must be a relative path of plain segments (letters, digits, '.', '_', '-'; "
            f"no '..', no leading '/', no URI, not {STATUS_DIR!r}) below the storage root"
        )
    return storage.join(root, *parts)


class GenerationFailed(Exception):
    """A job's sampling or encoding failed; the replica logged why under ``request_id``."""

    def __init__(self, request_id: str):
        super().__init__(f"generation failed; the server log has the details under request id {request_id}")
        self.request_id = request_id


def new_batch_id() -> str:
    return uuid.uuid4().hex


@dataclass
class BatchStatus:
    id: str
    output_prefix: str
    total: int
    status: str = "running"  # running | succeeded | failed (some inputs failed; see errors)
    done: int = 0
    failed: int = 0
    outputs: list[str | None] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # input index -> reason
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def progress(self) -> float:
        return (self.done + self.failed) / self.total

    def to_json(self) -> dict:
        return {**asdict(self), "progress": round(self.progress, 4)}


class BatchStore:
    """Batch status documents under ``<root>/_batches``."""

    def __init__(self, root: str):
        self.root = root

    def path(self, batch_id: str) -> str:
        return storage.join(self.root, STATUS_DIR, f"{batch_id}.json")

    def save(self, status: BatchStatus) -> None:
        storage.write_bytes_atomic(self.path(status.id), json.dumps(status.to_json(), indent=1).encode())

    def load(self, batch_id: str) -> dict | None:
        if not BATCH_ID.match(batch_id):
            raise RequestError(f"id: {batch_id!r} is not a batch id (32 hex digits)")
        try:
            return json.loads(storage.read_bytes(self.path(batch_id)))
        except FileNotFoundError:
            return None


async def run_batch(store: BatchStore, status: BatchStatus, jobs: list[Job],
                    make_video: Callable[[Job], Awaitable[bytes]], gate: asyncio.Semaphore) -> BatchStatus:
    """Generate every job (as many in flight as ``gate``, shared by all batches, allows: enough
    for the sampler to batch them), write each MP4 atomically, and keep the status document
    current. A failed input's error names its request id; the details are in the server log."""
    status.outputs = [None] * len(jobs)
    lock = asyncio.Lock()

    async def one(index: int, job: Job) -> None:
        uri = storage.join(status.output_prefix, f"{index:06d}.mp4")
        try:
            async with gate:
                video = await make_video(job)
            await asyncio.to_thread(storage.write_bytes_atomic, uri, video)
        except Exception as err:  # noqa: BLE001 -- one input failing must not lose the others
            if not isinstance(err, GenerationFailed):  # else the replica logged it already
                log.error("request %s: batch input failed", job.request_id, exc_info=err)
                err = GenerationFailed(job.request_id)
            async with lock:
                status.failed += 1
                status.errors[str(index)] = str(err)
                await asyncio.to_thread(store.save, status)
            return
        async with lock:
            status.done += 1
            status.outputs[index] = uri
            await asyncio.to_thread(store.save, status)

    await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
    status.status = "failed" if status.failed else "succeeded"
    status.finished_at = time.time()
    await asyncio.to_thread(store.save, status)
    return status
