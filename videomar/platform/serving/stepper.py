"""Concurrent streams on one replica advance together: each stream's thread asks for its
session's next frame; one of the waiting threads leads a round that takes every request waiting,
groups them by shape (model.batched.group_key) and makes each group's frames in one batched step.
The leader waits for the other running streams to ask (at most ``wait_s``) before a round, as
/v1/generate's batching waits for a batch to fill."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import Future
from threading import Condition

from videomar.model.batched import group_key, next_together


class Stepper:
    def __init__(self, wait_s: float = 0.02):
        self.wait_s = wait_s
        self.cond = Condition()
        self.pending: list[tuple[object, Future]] = []
        self.leading = False
        self.streams = 0  # streams running: a round waits for all of them to ask
        self.sizes: Counter = Counter()  # sessions per batched step

    def joined(self, delta: int) -> None:
        with self.cond:
            self.streams += delta
            self.cond.notify_all()

    def next(self, session):
        """The session's next latent frame [B, C, 1, H, W], made with the other streams'."""
        mine: Future = Future()
        with self.cond:
            self.pending.append((session, mine))
            self.cond.notify_all()
            while not mine.done() and self.leading:
                self.cond.wait(0.1)
            if mine.done():
                return mine.result()
            self.leading = True
        try:
            self._round()
        finally:
            with self.cond:
                self.leading = False
                self.cond.notify_all()
        return mine.result()

    def _round(self) -> None:
        deadline = time.monotonic() + self.wait_s
        with self.cond:
            while len(self.pending) < self.streams and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            batch, self.pending = self.pending, []
        groups: dict[tuple, list[tuple[object, Future]]] = defaultdict(list)
        for session, future in batch:
            groups[_key(session)].append((session, future))
        for group in groups.values():
            self.sizes[len(group)] += 1
            try:
                frames = next_together([s for s, _ in group])
            except Exception as err:  # noqa: BLE001 -- every stream of the group learns it
                for _, future in group:
                    future.set_exception(err)
                continue
            for (_, future), frame in zip(group, frames):
                future.set_result(frame)


def _key(session) -> tuple:
    """Sessions that cannot share a step (one generator for several samples) get a key alone."""
    key = group_key(session)
    return key if session.batch == 1 else (*key, id(session))
