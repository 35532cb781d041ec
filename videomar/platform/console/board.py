"""Figures from inside Ray workers to the driver's live view, while they run.

Rank 0 of a training run holds a ``Reporter``: each call is one clock read, and at most every
``SEND_EVERY_S`` seconds one fire-and-forget call to the ``Board``, a small Ray actor (no CPU
reserved) that keeps the latest figures of each phase; at the start, on a checkpoint and at the
last step the call waits until the board has the figures. The
driver polls the board every ``POLL_S`` seconds and updates the phase's row. Nothing waits on the
board: a lost update is replaced by the next one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

from videomar.platform.console.view import Phase

SEND_EVERY_S = 2.0  # between two updates from a worker
POLL_S = 1.0  # between two reads of the board by the driver
WAIT_S = 10.0  # the longest a worker waits for the board (on a checkpoint, the last step, the start)


class Board:
    """The Ray actor: the latest (done, total, figures) of each phase, by key."""

    def __init__(self):
        self.latest: dict[str, tuple[float, float | None, dict[str, Any]]] = {}

    def put(self, key: str, done: float, total: float | None, figures: dict[str, Any]) -> None:
        old = self.latest.get(key, (0, None, {}))[2]
        self.latest[key] = (done, total, {**old, **figures})

    def take(self, key: str) -> tuple[float, float | None, dict[str, Any]] | None:
        return self.latest.pop(key, None)


class Reporter:
    """A worker's end of the board, for one phase; picklable (it travels in the loop's config)."""

    def __init__(self, board, key: str):
        self.board, self.key, self.sent_at = board, key, 0.0

    def __getstate__(self):
        return {"board": self.board, "key": self.key, "sent_at": 0.0}

    def due(self) -> bool:
        """Whether a report now would be sent (figures costly to compute can wait for it)."""
        return time.monotonic() - self.sent_at >= SEND_EVERY_S

    def __call__(self, done: float, total: float | None = None, now: bool = False, **figures: Any) -> None:
        """Report the count and figures; sent only every SEND_EVERY_S unless ``now``. ``now``
        also waits until the board has them (a checkpoint, the last step: the worker may be
        stopped right after, and a call still queued in it would be lost)."""
        if not (now or self.due()):
            return
        self.sent_at = time.monotonic()
        sent = self.board.put.remote(self.key, done, total, figures)
        if now:
            import ray

            try:
                ray.get(sent, timeout=WAIT_S)
            except Exception:  # the view is best effort: a slow board never fails the job
                pass


_boards: dict[str, Any] = {}  # Ray node and job -> this driver's board


def _board():
    """This driver's board, made once per Ray job and kept: an actor whose last handle is dropped
    is stopped, and one looked up again while stopping takes no more calls."""
    import ray

    context = ray.get_runtime_context()
    job = f"{context.get_node_id()}/{context.get_job_id()}"  # a new local cluster reuses job ids
    if job not in _boards:
        _boards.clear()  # a board of an earlier Ray session is gone with it
        _boards[job] = ray.remote(num_cpus=0, max_concurrency=4)(Board).remote()
    return _boards[job]


@contextlib.contextmanager
def watched(phase: Phase) -> Iterator[Reporter]:
    """A Reporter whose updates reach ``phase`` while the block runs (Ray is connected)."""
    import ray

    board = _board()
    key = f"{id(phase)}-{time.monotonic_ns()}"
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(POLL_S):
            _apply(ray, board, key, phase)

    poller = threading.Thread(target=poll, name="videomar-board", daemon=True)
    poller.start()
    try:
        yield Reporter(board, key)
    finally:
        stop.set()
        poller.join()
        _apply(ray, board, key, phase)  # the last update, sent just before the end


def _apply(ray, board, key: str, phase: Phase) -> None:
    try:
        latest = ray.get(board.take.remote(key), timeout=10)
    except Exception:  # the view is best effort: a slow or lost board never fails the job
        return
    if latest is not None:
        done, total, figures = latest
        phase.update(done, total, **figures)
