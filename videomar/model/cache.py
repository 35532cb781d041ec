"""The temporal KV cache: per-layer keys and values of finished (clean) frames, in a buffer
allocated once, and the policy that decides which frames it keeps.

Policies:
  full         keep every frame (the buffer doubles when it fills: amortised, never per frame)
  sink_window  keep the first ``sink`` frames (the attention sink) and the last ``window`` frames;
               a new frame overwrites the slot of the oldest non-sink frame, so memory and
               attention cost stay constant however long the video runs

Keys are stored before their rotary embedding and rotated when attention reads them, at
*re-based* temporal positions: a retained frame's position is its rank among the retained frames
(sinks first, at their own positions 0..S-1), and the next frame sits right after them. So the
positions attention sees never exceed sink + window, the horizon the model was trained on, and
while nothing has been evicted they equal the absolute frame indices (``full`` == today's cache).
The rotated keys are computed once per cache state (per frame, not per spatial step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videomar.errors import ConfigError
from videomar.model.rope import Rope3D, apply_rope

POLICIES = ("full", "sink_window")


@dataclass(frozen=True)
class CachePolicy:
    kind: str = "full"
    sink: int = 1  # frames kept as the attention sink; what survives a flush or a cut
    window: int | None = None  # sink_window: the most recent frames kept besides the sink

    def validate(self) -> "CachePolicy":
        if self.kind not in POLICIES:
            raise ConfigError(f"cache policy {self.kind!r}: expected one of {', '.join(POLICIES)}")
        if self.sink < 0:
            raise ConfigError(f"sink={self.sink}: must be >= 0 frames")
        if self.kind == "sink_window" and (self.window is None or self.window < 1):
            raise ConfigError(f"window={self.window}: sink_window keeps at least one recent frame")
        if self.kind == "full" and self.window is not None:
            raise ConfigError("window: only the sink_window policy has a window (policy is full)")
        return self

    @property
    def capacity(self) -> int | None:
        """Frames the cache holds at most (None: unbounded)."""
        return self.sink + self.window if self.kind == "sink_window" else None


class KVCache:
    """Per layer, keys (un-rotated) and values [B, heads, slots * N, head_dim]; slot i holds the
    frame ``slot_frame[i]`` (absolute index). Filled slots are always the first ones."""

    def __init__(self, depth: int, policy: CachePolicy | None = None, rope: Rope3D | None = None,
                 capacity: int = 0):
        self.policy = (policy or CachePolicy()).validate()
        self.rope = rope
        self.keys: list[torch.Tensor | None] = [None] * depth
        self.values: list[torch.Tensor | None] = [None] * depth
        self.slot_frame: list[int] = []
        self.frames_seen = 0  # the absolute index of the next new frame
        self.tokens_per_frame = 0
        self.spatial: torch.Tensor | None = None  # [N, 2] (y, x) of one frame's tokens
        self.capacity_hint = capacity  # frames to allocate at the first write (full policy)
        self._pending: tuple[list[int], list[int], list[int]] | None = None  # slots, frames, new slot_frame
        self._reuse: list[int] = []
        self._rotated: dict[int, torch.Tensor] = {}
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- reading -----------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Tokens retained (the same in every layer)."""
        return len(self.slot_frame) * self.tokens_per_frame

    @property
    def next_position(self) -> int:
        """The re-based temporal position of the next frame: the number of retained frames."""
        return len(self.slot_frame)

    def retained_frames(self) -> list[int]:
        """Absolute indices of the frames held, in temporal order."""
        return sorted(self.slot_frame)

    def positions(self) -> torch.Tensor:
        """Integer (t, y, x) of every retained token in slot order: [length, 3]; t is re-based."""
        ranks = torch.tensor(self.slot_frame).argsort().argsort()  # [F] rank of each slot's frame
        n = self.tokens_per_frame
        t = ranks.to(self.spatial.device).repeat_interleave(n)[:, None]  # [F*N, 1]
        return torch.cat([t, self.spatial.repeat(len(self.slot_frame), 1)], dim=1)

    def get(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(keys rotated at their re-based positions, values), each [B, heads, length, hd]."""
        if not self.slot_frame:
            return None
        if layer not in self._rotated:
            if self._tables is None:
                self._tables = self.rope(self.positions())  # cos, sin [length, hd]
            keys = self.keys[layer][:, :, : self.length]
            self._rotated[layer] = apply_rope(keys, *self._tables, self.rope.slices)
        return self._rotated[layer], self.values[layer][:, :, : self.length]

    def nbytes(self) -> int:
        """Bytes of the key and value buffers (allocated, whether filled or not)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    # -- writing: begin(pos), write(layer, k, v) for every layer, end() ------------------------
    def begin(self, pos: torch.Tensor) -> None:
        """Claim slots for the frames at positions pos [F*N, 3] about to be written; evicts the
        oldest non-sink frames when the policy's capacity is reached. Reads still see the cache
        as it was until end()."""
        frames = int(pos[:, 0].unique().numel())
        if not self.tokens_per_frame:
            self.tokens_per_frame = pos.shape[0] // frames
            self.spatial = pos[: self.tokens_per_frame, 1:].clone()
        indices = self._reuse[:frames] or list(range(self.frames_seen, self.frames_seen + frames))
        if len(indices) != frames:
            raise ValueError(f"a rewrite of {len(self._reuse)} more frames was given {frames} frames")
        order, slots, cap = list(self.slot_frame), [], self.policy.capacity
        for index in indices:
            if cap is None or len(order) < cap:
                order.append(index)
                slots.append(len(order) - 1)
            else:
                victims = [s for s, f in enumerate(order) if f >= self.policy.sink]
                if not victims:
                    raise ConfigError(f"window: the cache keeps only its {self.policy.sink} sink frames")
                slot = min(victims, key=lambda s: order[s])
                order[slot] = index
                slots.append(slot)
        self._pending = (slots, indices, order)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k (un-rotated), v [B, heads, F*N, hd] of the frames claimed by begin()."""
        slots, _, order = self._pending
        n = self.tokens_per_frame
        for name, new in (("keys", k), ("values", v)):
            buffers = getattr(self, name)
            buffers[layer] = buf = self._room(buffers[layer], new, len(order))
            for j, slot in enumerate(slots):
                buf[:, :, slot * n:(slot + 1) * n] = new[:, :, j * n:(j + 1) * n]

    def end(self) -> None:
        _, indices, order = self._pending
        self.slot_frame = order
        self.frames_seen = max(self.frames_seen, max(indices) + 1)
        self._pending, self._reuse = None, self._reuse[len(indices):]
        self._changed()

    def _room(self, buf: torch.Tensor | None, like: torch.Tensor, frames: int) -> torch.Tensor:
        """A buffer [B, heads, slots*N, hd] with at least ``frames`` slots: allocated once (a
        bounded policy's capacity, else the hint), doubled when a full cache outgrows it."""
        n = self.tokens_per_frame
        have = 0 if buf is None else buf.shape[2] // n
        if frames <= have:
            return buf
        want = self.policy.capacity or max(frames, self.capacity_hint, 2 * have)
        b, h, _, d = like.shape
        grown = like.new_zeros(b, h, want * n, d)
        if buf is not None:
            grown[:, :, : buf.shape[2]] = buf
        return grown

    # -- switches ----------------------------------------------------------------------------
    def keep(self, frames: list[int]) -> None:
        """Keep only these absolute frames (moved to the first slots in temporal order): a
        flush or a cut. Their keys and values are kept as computed; only positions re-base."""
        kept = [f for f in self.retained_frames() if f in set(frames)]
        n = self.tokens_per_frame
        slots = [self.slot_frame.index(f) for f in kept]
        index = torch.tensor([s * n + i for s in slots for i in range(n)], dtype=torch.long)
        for buffers in (self.keys, self.values):
            for layer, buf in enumerate(buffers):
                if buf is not None:
                    moved = buf.index_select(2, index.to(buf.device))  # [B, heads, kept*N, hd]
                    buf[:, :, : moved.shape[2]] = moved
        self.slot_frame = kept
        self._changed()

    def reset(self, rewrite: list[int]) -> None:
        """Empty the cache (buffers kept) so that the next writes recompute these absolute
        frames, in order, under their old indices: a recache (sink frames stay sinks)."""
        self.slot_frame, self._reuse = [], sorted(rewrite)
        self._changed()

    def _changed(self) -> None:
        self._rotated, self._tables = {}, None
