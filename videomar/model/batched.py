"""Several streaming sessions advanced by one frame in one batched step: one backbone call per
spatial step for all of them, each keeping its own cache, prompt, settings and random stream.

Sessions can share a step when they have the same model, frame grid, spatial steps, mode and
guidance (on or off), and their caches hold the same number of frames (with ``sink_window``,
every stream past sink + window frames). Each session must draw from one generator per sample
(a torch.Generator for a one-sample session), so its frames are the ones it would make alone, up
to float rounding. Rows are laid out [conditional rows of every session, null-text rows of every
session], the layout one guided session has.
"""

from __future__ import annotations

import torch

from videomar.model.rng import RowGenerators
from videomar.model.session import StreamSession, _autocast
from videomar.model.settings import SampleSettings, is_sequence
from videomar.model.tokens import unpatchify
from videomar.model.videomar import TextContext


def group_key(session: StreamSession) -> tuple:
    """Sessions with equal keys can step together."""
    cache = session.cache
    return (id(session.model), session.grid, session.s.steps, session.s.mode, session.guided,
            None if cache is None else cache.length, None if cache is None else cache.next_position)


def next_together(sessions: list[StreamSession]) -> list[torch.Tensor]:
    """Each session's next latent frame [B_i, C, 1, H, W], made in one batched step."""
    if len(sessions) == 1:
        return [sessions[0].next(1)]
    if len({group_key(s) for s in sessions}) != 1 or any(s.cache is None or s.ctx is None for s in sessions):
        raise ValueError("sessions of different shapes, cache lengths or modes cannot step together")
    view = _view(sessions)
    with torch.no_grad(), _autocast(view.device):
        temperature = []
        for s in sessions:
            f = s.first + s.done
            t = s.s.temperature_at(f, s.first, s.first + s.s.frames)
            temperature += list(t) if is_sequence(t) else [t] * s.batch
        bases = [s.residual_base() for s in sessions]
        base = None if bases[0] is None else torch.cat(bases)  # [sum B, N, c]
        hints = [s.frame_hint() for s in sessions]
        hint = None if hints[0] is None else torch.cat(hints)  # [sum B, N, D]
        frame = view._sample_frame(None, temperature, base, hint)  # [sum B, N, c]
        frames = list(frame.split([s.batch for s in sessions]))
        bound = sessions[0].model.config.frame_clip
        frames = [(f.clamp(-bound, bound) if s.done else f).to(s.dtype) for s, f in zip(sessions, frames)]
        view._write_clean(torch.cat(frames)[:, None])
    for s, f in zip(sessions, frames):
        s._keep(s.first + s.done, f)
        s._forget()
        s.done += 1
    return [unpatchify(f[:, None], s.p, s.grid) for s, f in zip(sessions, frames)]


def _view(sessions: list[StreamSession]) -> StreamSession:
    """A session object over all rows: merged context, cache, generators and settings."""
    first = sessions[0]
    view = object.__new__(StreamSession)
    view.model, view.p, view.grid, view.n, view.c = first.model, first.p, first.grid, first.n, first.c
    view.dtype, view.device, view.guided = first.dtype, first.device, first.guided
    view.batch = sum(s.batch for s in sessions)
    cfg = [c for s in sessions for c in _per_row(s.s.cfg, s.batch)]
    view.s = SampleSettings(1, first.s.steps, cfg, 1.0, first.s.mode)
    view.gen = RowGenerators([g for s in sessions for g in _generators(s)])
    view.ctx = _context(sessions)
    view.cache = MergedCache(sessions)
    return view


def _per_row(value, batch: int) -> list:
    return list(value) if is_sequence(value) else [value] * batch


def _generators(session: StreamSession) -> list:
    gen = session.gen
    if isinstance(gen, RowGenerators):
        return gen.generators
    if isinstance(gen, torch.Generator) and session.batch == 1:
        return [gen]
    raise ValueError("a session steps with others only with one generator per sample")


def _halves(session: StreamSession, rows: torch.Tensor) -> list[torch.Tensor]:
    """A session's rows [rows_i, ...] as [conditional, null-text] (one part when unguided)."""
    return list(rows.chunk(2)) if session.guided else [rows]


def to_merged(sessions, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-session row blocks -> the merged layout [cond of all, null of all]."""
    parts = [_halves(s, t) for s, t in zip(sessions, tensors)]
    return torch.cat([p[half] for half in range(len(parts[0])) for p in parts])


def from_merged(sessions, merged: torch.Tensor) -> list[torch.Tensor]:
    """The merged layout -> each session's row block."""
    halves = 2 if sessions[0].guided else 1
    split = [chunk.split([s.batch for s in sessions]) for chunk in merged.chunk(halves)]
    return [torch.cat([split[h][i] for h in range(halves)]) for i in range(len(sessions))]


def _context(sessions) -> TextContext:
    length = max(s.ctx.mask.shape[1] for s in sessions)
    pad = lambda t: torch.nn.functional.pad(t, [0, 0] * (t.dim() - 2) + [0, length - t.shape[1]])  # noqa: E731
    emb = to_merged(sessions, [pad(s.ctx.embeddings) for s in sessions])  # [rows, L, text_dim]
    mask = to_merged(sessions, [pad(s.ctx.mask.to(torch.uint8)) for s in sessions])  # [rows, L]
    return TextContext(emb, mask.bool())  # the padding is masked out


class MergedCache:
    """The sessions' caches seen as one: reads concatenate their rows, writes split them back."""

    def __init__(self, sessions):
        self.sessions = sessions
        self.caches = [s.cache for s in sessions]
        self.length, self.next_position = self.caches[0].length, self.caches[0].next_position

    def get(self, layer: int):
        parts = [c.get(layer) for c in self.caches]
        if parts[0] is None:
            return None
        return tuple(to_merged(self.sessions, [p[i] for p in parts]) for i in range(2))  # k, v [rows, h, P, hd]

    def begin(self, pos: torch.Tensor) -> None:
        for c in self.caches:
            c.begin(pos)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        for c, ki, vi in zip(self.caches, from_merged(self.sessions, k), from_merged(self.sessions, v)):
            c.write(layer, ki, vi)

    def end(self) -> None:
        for c in self.caches:
            c.end()
