"""The worker's side of the latent dataset: an endless, shuffled, resumable stream of batches, and a
fresh latent sample per step from the stored posterior moments.

Each rank reads its own part of the stage's bucket with pyarrow: the bucket's clips (of the split,
in manifest order) are cut into ``world`` equal contiguous ranges, one per rank, so every rank has
the same number of batches per epoch and all step in lockstep (the last partial batch is dropped).

Every epoch is shuffled from (seed, rank, epoch): the order of the rank's shard pieces is permuted,
consecutive pieces are grouped into windows of at least ``window_clips`` clips, and the clips of a
window are permuted. The order depends only on the clip counts, so a resumed run recomputes it and
continues at the exact batch where it stopped, and reading from memory or from storage gives the
same batches. A rank whose clips fit in ``data.memory_mb`` reads them once and iterates from
memory (in one window: a full permutation); a larger one streams windows of half that size, a
background thread reading the next window (across epoch boundaries) while the current one trains.
"""

from __future__ import annotations

import math
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket
from videomar.artifacts.manifest import load_manifest
from videomar.artifacts.shards import read_shard_info
from videomar.data_pipelines.reader import check_shards, find_bucket, shard_locations
from videomar.data_pipelines.reader import unflatten
from videomar.errors import ConfigError
from videomar.model.vae import sample_posterior
from videomar.platform.training.epochs import Window, windows_from

# What a clip's caption costs in memory, beyond its latents (an estimate: captions are short).
CAPTION_BYTES = 256
READ_COLUMNS = ("mean", "logvar", "caption", "split")
WINDOWS_HELD = 2  # the window being trained on and the one read ahead


@dataclass
class Batch:
    mean: torch.Tensor  # [B, C, T', H', W']
    logvar: torch.Tensor  # [B, C, T', H', W']
    captions: list[str]


def collate(columns: dict[str, np.ndarray]) -> Batch:
    """Numpy columns -> a Batch (captions stay strings: they are tokenized by the model)."""
    return Batch(
        mean=torch.as_tensor(np.ascontiguousarray(columns["mean"]), dtype=torch.float32),
        logvar=torch.as_tensor(np.ascontiguousarray(columns["logvar"]), dtype=torch.float32),
        captions=[str(c) for c in columns["caption"]],
    )


@dataclass(frozen=True)
class StageData:
    """The stage's bucket as the workers read it, resolved on the driver; picklable."""

    uris: tuple[str, ...]  # the bucket's shards, in manifest order
    clips: tuple[int, ...]  # clips of ``split`` in each shard
    latent_shape: tuple[int, int, int, int]  # (C, T', H', W')
    split: str
    memory_bytes: int  # the most clip bytes a worker holds (data.memory_mb)

    @property
    def clip_bytes(self) -> int:
        """Memory of one clip: its posterior mean and logvar (float32) and caption."""
        return 2 * 4 * math.prod(self.latent_shape) + CAPTION_BYTES


def load_stage_data(manifest_uri: str, bucket: Bucket, split: str, memory_mb: int) -> StageData:
    """Read the bucket's shard footers (refusing shards that differ from the manifest)."""
    manifest = load_manifest(manifest_uri)
    entry = find_bucket(manifest, bucket, manifest_uri)
    uris = shard_locations(manifest_uri, entry)
    check_shards(uris, manifest, entry)
    infos = [read_shard_info(u) for u in uris]
    clips = [sum(i.counts.values()) if split == "all" else int(i.counts.get(split, 0)) for i in infos]
    shape = tuple(int(v) for v in entry.latent_shape)
    return StageData(uris=tuple(uris), clips=tuple(clips), latent_shape=shape,  # type: ignore[arg-type]
                     split=split, memory_bytes=memory_mb * 2**20)


@dataclass(frozen=True)
class Piece:
    """The clips [start, stop) of one shard (counted among its clips of the split) that a rank reads."""

    uri: str
    start: int
    stop: int

    @property
    def clips(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class RankData:
    """One rank's part of the bucket and how it is held."""

    data: StageData
    pieces: tuple[Piece, ...]
    window_clips: int  # clips shuffled together (at least; whole pieces are grouped)
    in_memory: bool

    @property
    def clips(self) -> int:
        return sum(p.clips for p in self.pieces)


def rank_data(data: StageData, rank: int, world: int) -> RankData:
    """Rank ``rank``'s equal, contiguous range of the bucket's clips; in memory if it fits the budget."""
    per = sum(data.clips) // world
    lo, hi = rank * per, (rank + 1) * per
    pieces, offset = [], 0
    for uri, n in zip(data.uris, data.clips):
        start, stop = max(lo, offset), min(hi, offset + n)
        if start < stop:
            pieces.append(Piece(uri, start - offset, stop - offset))
        offset += n
    in_memory = per * data.clip_bytes <= data.memory_bytes
    window = per if in_memory else window_clips(data)
    return RankData(data, tuple(pieces), max(window, 1), in_memory)


def window_clips(data: StageData) -> int:
    """Clips per streamed window: the budget holds the window trained on and the one read ahead."""
    return data.memory_bytes // WINDOWS_HELD // data.clip_bytes


def check_memory(data: StageData, batch_size: int) -> None:
    """A streamed window must hold a batch; ConfigError naming data.memory_mb otherwise."""
    if window_clips(data) < batch_size:
        raise ConfigError(
            f"data.memory_mb={data.memory_bytes // 2**20}: half of it holds {window_clips(data)} clips of "
            f"{data.clip_bytes} bytes, fewer than optim.batch_size={batch_size}; raise data.memory_mb")


@dataclass
class Clips:
    mean: np.ndarray  # [N, C, T', H', W'] float32
    logvar: np.ndarray  # [N, C, T', H', W'] float32
    caption: np.ndarray  # [N] str

    def __len__(self) -> int:
        return len(self.caption)

    def take(self, index: np.ndarray) -> "Clips":
        return Clips(self.mean[index], self.logvar[index], self.caption[index])

    @staticmethod
    def concat(parts: list["Clips"]) -> "Clips":
        if len(parts) == 1:
            return parts[0]
        return Clips(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("mean", "logvar", "caption")))


def read_piece(piece: Piece, data: StageData) -> Clips:
    """A piece's clips from storage (the whole shard is read: shards are small, one row group)."""
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(piece.uri)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f, columns=list(READ_COLUMNS))
    columns = unflatten(table, data.latent_shape, data.split)
    part = slice(piece.start, piece.stop)
    # A copy when only part of the shard is this rank's: the rest of it is not kept alive.
    keep = (lambda a: a[part].copy()) if piece.clips < len(columns["caption"]) else (lambda a: a[part])
    return Clips(keep(columns["mean"]), keep(columns["logvar"]), keep(columns["caption"]))


class RankStream:
    """Opens a rank's data: in memory, its clips start loading at once (while the engine builds)."""

    def __init__(self, rank: RankData, rank_index: int, seed: int,
                 read: Callable[[Piece, StageData], Clips] = read_piece):
        self.rank, self.rank_index, self.seed, self.read = rank, rank_index, seed, read
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="videomar-data")
        self._held: Future | None = self._pool.submit(self._load_all) if rank.in_memory else None

    def _load_all(self) -> tuple[Clips, np.ndarray]:
        """All the rank's clips (pieces in order) and each piece's first position among them."""
        parts = [self.read(p, self.rank.data) for p in self.rank.pieces]
        starts = np.cumsum([0] + [len(p) for p in parts])
        return Clips.concat(parts), starts

    def batches(self, batch_size: int, epoch: int, skip: int) -> Iterator[tuple[int, int, Batch]]:
        """(epoch, index in epoch, batch) forever, starting at ``epoch`` after ``skip`` batches."""
        if self.rank.clips < batch_size:
            raise RuntimeError(
                f"this worker's part of the bucket has {self.rank.clips} clips, fewer than optim.batch_size="
                f"{batch_size}; lower optim.batch_size or resources.workers, or add clips to the bucket")
        sizes = [p.clips for p in self.rank.pieces]
        windows = windows_from(sizes, self.rank.window_clips, self.seed, self.rank_index, epoch, skip * batch_size)
        loaded = self._from_memory(windows) if self._held is not None else read_ahead(
            (self._from_storage(w) for w in windows), WINDOWS_HELD)
        return batched(loaded, batch_size, epoch, skip)

    def _from_memory(self, windows: Iterator[Window]) -> Iterator[tuple[int, Clips, np.ndarray]]:
        assert self._held is not None
        clips, starts = self._held.result()
        for w in windows:
            positions = np.concatenate([np.arange(starts[p], starts[p + 1]) for p in w.pieces])
            yield w.epoch, clips, positions[w.order]

    def _from_storage(self, w: Window) -> tuple[int, Clips, np.ndarray]:
        return w.epoch, Clips.concat([self.read(self.rank.pieces[p], self.rank.data) for p in w.pieces]), w.order


def batched(windows: Iterator[tuple[int, Clips, np.ndarray]], batch_size: int, epoch: int,
            index: int) -> Iterator[tuple[int, int, Batch]]:
    """Batches of ``batch_size`` clips across windows; an epoch's last partial batch is dropped."""
    pending: list[Clips] = []
    count = 0
    for window_epoch, clips, order in windows:
        if window_epoch != epoch:
            epoch, index, pending, count = window_epoch, 0, [], 0
        at = 0
        while at < len(order):
            take = min(batch_size - count, len(order) - at)
            pending.append(clips.take(order[at:at + take]))
            count, at = count + take, at + take
            if count == batch_size:
                batch = Clips.concat(pending)
                yield epoch, index, collate({"mean": batch.mean, "logvar": batch.logvar, "caption": batch.caption})
                pending, count, index = [], 0, index + 1


def read_ahead(items: Iterator, held: int) -> Iterator:
    """``items`` computed by a background thread, at most ``held`` at a time (the one the consumer
    has and those made ahead); the thread's errors are raised here, and it stops when this does."""
    slots = threading.Semaphore(held)
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = next(items, done)
                ready.put(item)
                if item is done:
                    return
        except BaseException as err:  # noqa: BLE001  (raised in the consumer)
            ready.put(err)

    threading.Thread(target=produce, name="videomar-read-ahead", daemon=True).start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            slots.release()  # the consumer is done with the item it had
    finally:
        stop.set()


def draw_latents(batch: Batch, scale: float, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """A fresh posterior sample, times the VAE's latent scale: [B, C, T', H', W']."""
    mean = batch.mean.to(device, non_blocking=True)
    logvar = batch.logvar.to(device, non_blocking=True)
    return sample_posterior(mean, logvar, generator) * scale
