"""Counting the processes a command started, by PID (psutil), before and after it is stopped the
way a terminal's Ctrl-C stops it: SIGINT to its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil


def sigint_as_in_a_terminal() -> None:
    """preexec_fn for a command that a test Ctrl-Cs: SIGINT at its default, as a terminal starts
    it. A background job of a non-interactive shell inherits SIGINT ignored, and Python then
    never raises KeyboardInterrupt: the test would measure nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid: int) -> dict[int, float]:
    """PID -> start time of every process below ``pid``."""
    out = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            out[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            pass
    return out


def alive(processes: dict[int, float]) -> list[str]:
    """'name (pid)' of those still running: same PID and start time, not a zombie."""
    out = []
    for pid, started in processes.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.name()} ({pid})")
        except psutil.NoSuchProcess:
            pass
    return out


def ctrl_c(proc: subprocess.Popen, exit_timeout_s: float = 60, settle_s: float = 20) -> tuple[float, int, list[str], int]:
    """SIGINT the group of ``proc`` (started with start_new_session=True); returns (seconds until
    it exited, its exit status, the processes it started that are still running, how many it had
    started). Survivors are killed afterwards, so that the test leaves nothing behind."""
    before = descendants(proc.pid)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    status = proc.wait(timeout=exit_timeout_s)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + settle_s
    while alive(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = alive(before)
    for pid in before:
        if alive({pid: before[pid]}):
            os.kill(pid, signal.SIGKILL)
    return seconds, status, left, len(before)
