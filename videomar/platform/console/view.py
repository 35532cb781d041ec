"""What the user sees while a verb runs: one progress row per phase and the lines that last.

On a terminal the rows are drawn live by rich (a bar, done/total, the phase's figures, elapsed);
anywhere else (CI, a file, ``videomar logs`` of a submitted job) the same figures come as plain
lines, one per running phase every ``plain_every_s`` seconds, never as redraws.

A phase's figures are a small dict (``{"loss": 0.51, "lr": 3e-4}``) shown as ``loss 0.51 · lr
0.0003``; ``done``/``total`` are its count of steps, clips or items.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

# Between two plain lines of a running phase (a terminal is redrawn about four times a second);
# a line that would say nothing new waits UNCHANGED_EVERY plain intervals.
PLAIN_EVERY_S = 30.0
UNCHANGED_EVERY = 3


def shown(value: Any) -> str:
    """A figure as a person reads it: 4 significant digits, small and large floats in e-notation."""
    if isinstance(value, float):
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.2e}"
    return str(value)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass
class Phase:
    """One step of a verb: its title, its count (``done`` of ``total`` ``unit``) and figures."""

    title: str
    total: float | None = None
    unit: str = ""
    done: float = 0
    figures: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    first_done: float | None = None  # the count when it first moved (a resumed run starts late)
    first_at: float | None = None

    def update(self, done: float | None = None, total: float | None = None, **figures: Any) -> None:
        if total is not None:
            self.total = total
        if done is not None:
            if self.first_done is None:
                self.first_done, self.first_at = done, time.monotonic()
            self.done = done
        self.figures.update({k: v for k, v in figures.items() if v is not None})

    def eta(self) -> float | None:
        """Seconds left at the rate seen since the count first moved; None before it can tell."""
        if not self.total or self.first_at is None or self.done <= (self.first_done or 0):
            return None
        rate = (self.done - self.first_done) / max(time.monotonic() - self.first_at, 1e-9)
        return max(self.total - self.done, 0) / rate

    def count(self) -> str:
        if self.total:
            return f"{self.unit} {shown(self.done)}/{shown(self.total)}".strip()
        return f"{shown(self.done)} {self.unit}".strip() if self.done else ""

    def summary(self) -> str:
        parts = [self.count()] + [f"{k} {shown(v)}" for k, v in self.figures.items()]
        eta = self.eta()
        if eta is not None and self.done < (self.total or 0):
            parts.append(f"ETA {duration(eta)}")
        return " · ".join(p for p in parts if p)


class PlainView:
    """Lines only: a phase's start, its figures every ``every_s`` seconds, and its end."""

    def __init__(self, stream: TextIO, every_s: float = PLAIN_EVERY_S):
        self.stream, self.every_s = stream, every_s
        self.phases: list[Phase] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="videomar-console", daemon=True)
        self.ticker.start()

    def say(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def begin(self, phase: Phase) -> None:
        if not self.phases:  # a phase inside another says only how it ended
            self.say(f"{phase.title} ...")
        self.phases.append(phase)

    def end(self, phase: Phase, ok: bool) -> None:
        self.phases.remove(phase)
        result = phase.summary()
        took = duration(time.monotonic() - phase.started)
        self.say(f"{phase.title}: {'done' if ok else 'FAILED'} in {took}" + (f" ({result})" if result else ""))

    def _tick(self) -> None:
        last, last_at = "", 0.0
        while not self.stop.wait(self.every_s):
            running = list(self.phases)
            phase = running[-1] if running else None  # the innermost says the most
            now = time.monotonic()
            if phase is None or now - phase.started < self.every_s:
                continue
            line = f"  {phase.title}: {phase.summary() or 'running'}"
            if line != last or now - last_at >= UNCHANGED_EVERY * self.every_s:
                self.say(f"{line} [{duration(now - phase.started)}]")
                last, last_at = line, now

    def close(self) -> None:
        self.stop.set()


class RichView:
    """The live view on a terminal: rich's Progress, one row per running phase."""

    def __init__(self, stream: TextIO, redirect: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream, highlight=False)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False, style="bold"),
                                 BarColumn(bar_width=24), TextColumn("{task.fields[summary]}", markup=False),
                                 TimeElapsedColumn(),
                                 console=self.console, refresh_per_second=4, transient=False,
                                 redirect_stdout=redirect, redirect_stderr=redirect)
        self.tasks: dict[int, Any] = {}
        self.progress.start()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="videomar-console", daemon=True)
        self.ticker.start()

    def say(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False)

    def begin(self, phase: Phase) -> None:
        with self.lock:
            self.tasks[id(phase)] = (phase, self.progress.add_task(phase.title, total=phase.total, summary=""))

    def end(self, phase: Phase, ok: bool) -> None:
        with self.lock:  # not while the ticker updates it
            _, task = self.tasks.pop(id(phase))
            self.progress.remove_task(task)
        took = duration(time.monotonic() - phase.started)
        result = phase.summary()
        from rich.text import Text

        mark = ("✓", "green") if ok else ("✗ FAILED", "red")
        self.console.print(Text.assemble(mark, f" {phase.title} ({took}{', ' + result if result else ''})"))

    def _tick(self) -> None:
        while not self.stop.wait(0.25):
            with self.lock:
                for phase, task in self.tasks.values():
                    self.progress.update(task, completed=phase.done, total=phase.total, summary=phase.summary())

    def close(self) -> None:
        self.stop.set()
        self.progress.stop()


def make_view(stream: TextIO, every_s: float = PLAIN_EVERY_S, redirect: bool = False):
    """The live view on a terminal, plain lines anywhere else. ``redirect``: Python's prints go
    above the live rows (when nothing else takes them: --verbose)."""
    return RichView(stream, redirect) if stream.isatty() else PlainView(stream, every_s)
