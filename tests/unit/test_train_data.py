"""The training data path without Ray: real Parquet shards and manifest, read by each rank's
stream; shuffling is seeded and changes every epoch, a resumed run continues at its batch, and
the in-memory and streamed paths give the same batches."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

import numpy as np
import pytest

from tests.support.latents import synthetic_latents
from videomar.platform.training.data import (RankStream, check_memory, load_stage_data, rank_data, read_ahead,
                                             window_clips)

CLIPS = 42  # 10 batches of 4 per epoch on one rank, 2 clips dropped
SHARD_CLIPS = 8  # 6 shards: file order is shuffled too
BATCH = 4
BUCKET = (9, 32, 32)
SHAPE = (2, 1, 2, 2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("latents"))
    manifest = synthetic_latents(out, CLIPS, latent_shape=SHAPE, bucket=BUCKET, shard_clips=SHARD_CLIPS)
    return load_stage_data(manifest, BUCKET, "train", memory_mb=1)


def captions(rank, seed=0, epoch=0, skip=0, count=10, rank_index=0):
    """(epoch, index, captions) of ``count`` batches of a fresh stream."""
    batches = RankStream(rank, rank_index, seed).batches(BATCH, epoch, skip)
    return [(e, i, b.captions) for e, i, b in islice(batches, count)]


def test_each_epoch_is_a_seeded_shuffle_of_the_same_clips(data):
    rank = rank_data(data, 0, 1)
    assert rank.in_memory and rank.clips == CLIPS
    first = captions(rank, count=30)
    assert [(e, i) for e, i, _ in first] == [(e, i) for e in range(3) for i in range(10)]
    epochs = [[c for e, _, cs in first if e == epoch for c in cs] for epoch in range(3)]
    for clips in epochs:
        assert len(clips) == len(set(clips)) == 40  # the last partial batch is dropped
        assert clips != sorted(clips, key=lambda c: int(c.split()[1]))  # not the stored order
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    assert captions(rank, count=30) == first  # the same seed, the same batches
    assert captions(rank, seed=1, count=30) != first


def test_a_resumed_stream_continues_at_the_batch_where_it_stopped(data):
    rank = rank_data(data, 0, 1)
    whole = captions(rank, count=25)
    for epoch, skip in ((0, 3), (1, 7), (1, 10), (2, 0)):
        at = epoch * 10 + skip
        assert captions(rank, epoch=epoch, skip=skip, count=25 - at) == whole[at:]


def test_in_memory_and_streamed_windows_give_the_same_batches(data):
    small = replace(data, memory_bytes=10 * 2 * data.clip_bytes)  # windows of 10 clips, 6 shards of 8
    streamed = rank_data(small, 0, 1)
    assert not streamed.in_memory and streamed.window_clips == window_clips(small) == 10
    held = replace(streamed, in_memory=True)
    a = list(islice(RankStream(streamed, 0, 3).batches(BATCH, 1, 2), 25))
    b = list(islice(RankStream(held, 0, 3).batches(BATCH, 1, 2), 25))
    assert [(e, i, x.captions) for e, i, x in a] == [(e, i, x.captions) for e, i, x in b]
    assert all(np.array_equal(x.mean.numpy(), y.mean.numpy()) and np.array_equal(x.logvar.numpy(), y.logvar.numpy())
               for (_, _, x), (_, _, y) in zip(a, b))
    # A clip's mean is its index: the batches carry the clips their captions name.
    assert all(abs(float(x.mean[j].mean()) - int(c.split()[1])) < 0.1
               for _, _, x in a for j, c in enumerate(x.captions))


def test_ranks_step_in_lockstep_on_disjoint_equal_parts(data):
    world = 3  # 14 clips each: 3 batches per epoch, 2 clips dropped
    ranks = [rank_data(data, r, world) for r in range(world)]
    assert {r.clips for r in ranks} == {CLIPS // world}
    seen = [captions(r, count=9, rank_index=i) for i, r in enumerate(ranks)]
    assert all([(e, i) for e, i, _ in s] == [(e, i) for e in range(3) for i in range(3)] for s in seen)
    parts = [{c for _, _, cs in s for c in cs} for s in seen]
    assert not (parts[0] & parts[1] or parts[1] & parts[2] or parts[0] & parts[2])


def test_a_memory_budget_below_a_batch_is_refused_naming_the_field(data):
    from videomar.platform.jobs import parse_spec

    with pytest.raises(ValueError, match="data.memory_mb"):
        check_memory(replace(data, memory_bytes=data.clip_bytes), BATCH)
    check_memory(data, BATCH)
    with pytest.raises(Exception, match="memory_mb"):
        parse_spec({"kind": "train", "name": "x", "schedule": {"steps": 1},
                    "data": {"manifest": "m.json", "bucket": {"frames": 9, "height": 32, "width": 32}, "memory_mb": 0}})


def test_read_ahead_yields_in_order_and_raises_the_readers_error():
    assert list(read_ahead(iter(range(5)), 2)) == list(range(5))

    def failing():
        yield 1
        raise OSError("shard unreadable")

    items = read_ahead(failing(), 2)
    assert next(items) == 1
    with pytest.raises(OSError, match="shard unreadable"):
        next(items)
