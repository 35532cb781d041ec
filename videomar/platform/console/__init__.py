"""The console of a long-running verb: a live view of its phases, and the rest in a log file.

``session(name, workdir)`` (opened by the CLI's long verbs) prints the log file's path, points the
process's stdout and stderr at ``<workdir>/logs/<name>-<time>.log`` (Ray, Ray Data, Ray Train,
DeepSpeed, MLflow, warnings; capture.py) and draws the view on the terminal (view.py; plain
lines when stdout is not a terminal). Code below it reports through three calls that work with
or without a session:

    say(line)                       a line that lasts (a result, where an output is)
    with phase(title, total, unit)  a progress row: ``p.update(done, total, **figures)``
    watched(phase) -> Reporter      the same row fed from inside Ray workers (board.py)

A failure inside a session prints the reason, the last relevant lines of the log and its path,
and becomes ``JobFailed`` (the CLI exits 1 without a traceback; the traceback is in the log).
``--verbose`` or VIDEOMAR_LOG_LEVEL=debug keeps everything on the console, as without a session.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Iterator

from videomar.errors import UserError
from videomar.ray_env import connected
from videomar.platform.console import board
from videomar.platform.console.board import Reporter
from videomar.platform.console.capture import Capture, reason, relevant_tail
from videomar.platform.console.view import PLAIN_EVERY_S, Phase, make_view

__all__ = ["JobFailed", "Phase", "Reporter", "enable", "enabled", "failed", "phase", "say", "session", "watched"]

LOG_LEVEL_ENV = "VIDEOMAR_LOG_LEVEL"  # "debug": everything on the console
LOG_DIR_ENV = "VIDEOMAR_LOG_DIR"  # where verbs without a work dir of their own write their log
PROGRESS_EVERY_ENV = "VIDEOMAR_PROGRESS_EVERY_S"  # plain lines: seconds between two


class JobFailed(Exception):
    """A verb failed and the console has said why; the CLI exits 1."""


class Session:
    def __init__(self, log_path: Path, capture: bool):
        self.log_path, self.told = log_path, False
        self.capture = Capture(log_path) if capture else None
        stream = self.capture.terminal if self.capture else sys.stdout
        self.view = make_view(stream, float(os.environ.get(PROGRESS_EVERY_ENV, PLAIN_EVERY_S)), redirect=not capture)

    def say(self, line: str) -> None:
        self.view.say(line)
        if self.capture:  # the log tells the whole story
            print(line, flush=True)

    def failed(self, why: str, tail: list[str] | None = None) -> None:
        """The reason; the first time, also the log's last relevant lines and its path."""
        self.say(f"failed: {why}")
        if self.told:
            return
        self.told = True
        if tail is None:
            tail = relevant_tail(self.log_path) if self.capture else []
        if tail:
            self.say("last lines of the log:")
            for line in tail:
                self.say(f"  {line}")
        if self.capture:
            self.say(f"full log: {self.log_path}")

    def close(self) -> None:
        self.view.close()
        if self.capture:
            self.capture.stop()


_enabled = {"on": False, "verbose": False}
_current: list[Session] = []


def enable(verbose: bool = False, on: bool = True) -> None:
    """Let verbs open sessions (the CLI does; code used as a library prints as it always did)."""
    _enabled["on"] = on
    _enabled["verbose"] = verbose or os.environ.get(LOG_LEVEL_ENV, "").lower() == "debug"


@contextlib.contextmanager
def enabled(verbose: bool = False) -> Iterator[None]:
    """Sessions enabled for one CLI call, then as before: a process that runs the CLI and then
    uses the library (a notebook, a test) gets plain prints back."""
    before = dict(_enabled)
    enable(verbose)
    try:
        yield
    finally:
        _enabled.update(before)


def say(line: str) -> None:
    if _current:
        _current[-1].say(line)
    else:
        print(line, flush=True)


def failed(why: str) -> None:
    """Say that the verb failed and why; in a session, with the log's last lines and path."""
    if _current:
        _current[-1].failed(why)
    else:
        print(f"failed: {why}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def phase(title: str, total: float | None = None, unit: str = "") -> Iterator[Phase]:
    """A progress row while the block runs; its end (done or FAILED, how long) is printed."""
    row = Phase(title, total, unit)
    if not _current:
        yield row
        return
    view = _current[-1].view
    view.begin(row)
    ok = False
    try:
        yield row
        ok = True
    finally:
        view.end(row, ok)


@contextlib.contextmanager
def watched(row: Phase) -> Iterator[Reporter | None]:
    """A Reporter feeding ``row`` from Ray workers (Ray connected); None outside a session."""
    if not _current:
        yield None
        return
    with board.watched(row) as reporter:
        yield reporter


@contextlib.contextmanager
def session(name: str, workdir: str | Path | None = None, capture: bool = True) -> Iterator[None]:
    """The console of one verb (nested sessions join the outer one). ``capture``: send the
    process's output to the log file; off for verbs that start nothing noisy here."""
    if _current or not _enabled["on"]:
        yield
        return
    verbose = _enabled["verbose"]
    if capture and not verbose:
        _quiet_ray_data()
    current = Session(log_file(name, workdir), capture and not verbose)
    _current.append(current)
    if current.capture:
        current.say(f"log: {current.log_path} (--verbose shows it all here)")
    ray_before = connected()
    try:
        yield
    except (UserError, KeyboardInterrupt, JobFailed):
        raise
    except Exception as err:
        if verbose:
            raise
        # What led to it, read before the traceback (which repeats the reason) joins the log.
        tail = relevant_tail(current.log_path) if current.capture else []
        traceback.print_exc()
        current.failed(reason(err), tail)
        raise JobFailed(reason(err)) from err
    finally:
        if current.capture and not ray_before and connected():
            _stop_ray()  # while its goodbyes still go to the log
        _current.pop()
        current.close()


def log_file(name: str, workdir: str | Path | None) -> Path:
    """``<workdir>/logs/<name>-<time>.log``; without a work dir, under VIDEOMAR_LOG_DIR or ./logs."""
    folder = Path(workdir) / "logs" if workdir is not None else Path(os.environ.get(LOG_DIR_ENV) or "logs")
    return (folder / f"{name.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.log").resolve()


def _quiet_ray_data() -> None:
    """Ray Data's progress bars off (they are redrawn lines; the view has its own rows)."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if "ray.data" in sys.modules:
        sys.modules["ray.data"].DataContext.get_current().enable_progress_bars = False


def _stop_ray() -> None:
    sys.modules["ray"].shutdown()
