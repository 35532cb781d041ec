"""The order in which a rank visits its clips: every epoch shuffled from (seed, rank, epoch) alone
(its shard pieces permuted, grouped into windows, each window's clips permuted), so a resumed run
recomputes it and continues at the exact batch where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class Window:
    """Clips trained on together: the pieces read (in this order) and the order of their clips."""

    epoch: int
    pieces: tuple[int, ...]  # indices into the rank's pieces
    order: np.ndarray  # [n] positions into the pieces' clips, concatenated in ``pieces`` order


def epoch_windows(sizes: list[int], window: int, seed: int, rank: int, epoch: int) -> list[Window]:
    """The shuffled windows of one epoch: a function of the piece sizes and (seed, rank, epoch) only."""
    rng = np.random.default_rng([seed & (2**64 - 1), rank, epoch])
    groups: list[list[int]] = []
    current: list[int] = []
    count = 0
    for p in rng.permutation(len(sizes)):
        current.append(int(p))
        count += sizes[p]
        if count >= window:
            groups.append(current)
            current, count = [], 0
    if current:
        groups.append(current)
    return [Window(epoch, tuple(g), rng.permutation(sum(sizes[p] for p in g))) for g in groups]


def windows_from(sizes: Sequence[int], window: int, seed: int, rank: int, epoch: int,
                 skip_clips: int) -> Iterator[Window]:
    """Every window from ``epoch`` on, forever, without the first ``skip_clips`` clips of ``epoch``;
    ``sizes`` are the clips of each of the rank's pieces, ``window`` the clips a window holds."""
    while True:
        for w in epoch_windows(list(sizes), window, seed, rank, epoch):
            if skip_clips >= len(w.order):
                skip_clips -= len(w.order)
                continue
            yield replace(w, order=w.order[skip_clips:])
            skip_clips = 0
        epoch, skip_clips = epoch + 1, 0
