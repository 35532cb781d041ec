"""The row-level stages of the precompute pipeline, as plain functions Ray Data maps (and the
sequential baseline calls): one source video -> its clip rows; a batch of encoded rows -> shards.

Every row has the same columns whatever its ``status``: ``clip`` (pixels to encode), ``skip``
(already in the dataset), ``error`` (the error_* columns say why), and after writing, ``written``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from videomar.artifacts.bucket import Bucket
from videomar.data_pipelines import clips as clip_ops
from videomar.data_pipelines.encode import CLIP
from videomar.data_pipelines.errors import InputError
from videomar.artifacts.shards import METADATA_COLUMNS, content_key, split_of, write_shard
from videomar.data_pipelines.sources import SourceProblem

SKIP, ERROR, WRITTEN = "skip", "error", "written"


@dataclass(frozen=True)
class ClipParams:
    buckets: tuple[Bucket, ...]  # (frames, height, width) in pixels
    stride: int = 1
    target_fps: float | None = None  # when set, the stride is chosen per video to approach it
    max_clips: int | None = None  # per video and bucket
    val_fraction: float = 0.0
    vae_id: str = ""


def blank_row(source: dict, split: str) -> dict:
    return {
        "status": "", "key": "", "source": source["uri"], "caption": source["caption"], "clip_index": -1,
        "start_frame": -1, "stride": 0, "fps": 0.0, "frames": 0, "height": 0, "width": 0, "split": split,
        "pixels": b"", "error_stage": "", "error_class": "", "error_message": "", "shard": "",
    }


def error_row(source: dict, split: str, err: BaseException, stage: str = "decode") -> dict:
    e = InputError.from_exception(source["uri"], stage, err)
    return {**blank_row(source, split), "status": ERROR, "error_stage": e.stage, "error_class": e.error_class,
            "error_message": e.message}


def decode_source(source: dict, params: ClipParams, done: frozenset[str] = frozenset()) -> Iterator[dict]:
    """The clip rows of one source video for every bucket: decoded clips, or ``skip`` rows for
    clips whose content key is in ``done``, or one ``error`` row naming why the video failed."""
    split = split_of(source["name"], params.val_fraction)
    if source.get("problem"):  # found while listing: a dangling link, a folder named like a video...
        yield error_row(source, split, SourceProblem(f"{source['uri']}: {source['problem']}"), "list")
        return
    try:
        reader = clip_ops.open_video(source["uri"])
        info = clip_ops.video_info(reader)
    except Exception as err:  # every input is accounted for: the error becomes a row
        yield error_row(source, split, err)
        return
    end = info.frames if source["end"] < 0 else min(info.frames, source["end"])
    emitted = 0
    for frames, height, width in params.buckets:
        stride = clip_ops.stride_for_fps(info.fps, params.target_fps, params.stride)
        for index, start in enumerate(clip_ops.clip_starts(end, frames, stride, params.max_clips, source["start"])):
            key = content_key(source["identity"], source["uri"], (frames, height, width), start, stride, params.vae_id)
            row = {**blank_row(source, split), "key": key, "clip_index": index, "start_frame": start,
                   "stride": stride, "fps": info.fps / stride, "frames": frames, "height": height, "width": width}
            emitted += 1
            if key in done:
                yield {**row, "status": SKIP}
                continue
            try:
                pixels = clip_ops.decode_clip(source["uri"], start, frames, stride, height, width, reader=reader)
            except Exception as err:
                yield error_row(source, split, err)
                return
            yield {**row, "status": CLIP, "pixels": pixels.tobytes()}
    if emitted == 0:
        shortest = min(clip_ops.clip_span(f, clip_ops.stride_for_fps(info.fps, params.target_fps, params.stride))
                       for f, _, _ in params.buckets)
        yield error_row(source, split, clip_ops.VideoTooShort(
            f"{source['uri']}: {end - source['start']} usable frames, fewer than the {shortest} the shortest "
            f"bucket's clip spans"))


def write_batch(batch: dict[str, np.ndarray], output: str, vae_id: str,
                latent_shapes: dict[Bucket, tuple[int, int, int, int]]) -> dict[str, np.ndarray]:
    """Write the encoded rows of a batch as one shard per bucket; the rows come back without their
    latents, marked ``written`` with their shard (other rows pass through)."""
    n = len(batch["status"])
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in range(n):
        if batch["status"][i] == CLIP:
            groups[(int(batch["frames"][i]), int(batch["height"][i]), int(batch["width"][i]))].append(i)
    out = {k: np.asarray(v).copy() for k, v in batch.items() if k not in ("mean", "logvar")}
    out["status"] = out["status"].astype(object)
    out["shard"] = out["shard"].astype(object)
    for bucket, rows in groups.items():
        shape = latent_shapes[bucket]
        mean = np.stack([np.frombuffer(batch["mean"][i], np.float32).reshape(shape) for i in rows])
        logvar = np.stack([np.frombuffer(batch["logvar"][i], np.float32).reshape(shape) for i in rows])
        meta = {name: [_plain(batch[name][i]) for i in rows] for name in METADATA_COLUMNS}
        info = write_shard(output, bucket, vae_id, meta, mean, logvar)
        for i in rows:
            out["status"][i] = WRITTEN
            out["shard"][i] = info.uri
    return out



def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
