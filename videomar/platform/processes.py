"""Long-running server processes (a Ray head, an MLflow server, an S3 server) that this package
starts and later stops by PID, never by name.

Each one is started in a session of its own, so it and every child it spawns share one process
group that can be signalled as a whole. A record keeps the PID and the kernel's start time of the
process: a later ``stop`` from another process (``videomar down``) checks both, so a PID that the
system has since reused for something else is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

# How long a server gets to exit on SIGTERM (a Ray head drains its node first) before SIGKILL.
STOP_GRACE_S = 40.0


class ProcessError(RuntimeError):
    """A server process failed to start or to answer; the message says which and where its log is."""


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find a started process again, from any later process."""

    name: str
    pid: int
    start_ticks: int
    log: str
    command: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProcessRecord":
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            log=str(data["log"]),
            command=[str(c) for c in data["command"]],
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process (same PID and start time) exists and is not a zombie."""
    if start_ticks(record.pid) != record.start_ticks:
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after[0] is the state, after[2] the process group.
        if after[0] != "Z" and int(after[2]) == pgid:
            members.append(int(entry.name))
    return members


def start(name: str, command: list[str], log: Path, env: Mapping[str, str], cwd: Path | None = None) -> ProcessRecord:
    """Start ``command`` as the leader of a new session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        except OSError as err:
            raise ProcessError(f"{name}: cannot start {command[0]}: {err.strerror or err}") from None
    ticks = start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise ProcessError(f"{name} exited at once with status {proc.returncode}; log: {log}")
    # The Popen object is dropped: the process belongs to its record now, and a ``videomar up``
    # that exits leaves it running for ``videomar down``.
    proc.returncode = 0
    return ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log), command=list(command))


def wait_ready(record: ProcessRecord, ready: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``ready()`` until it is true; fail, quoting the log's tail, if the process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_running(record):
            raise ProcessError(f"{record.name} exited during start-up; log {record.log}:\n{log_tail(record)}")
        if ready():
            return
        time.sleep(0.25)
    raise ProcessError(f"{record.name} did not become ready within {timeout_s:.0f} s; log {record.log}:\n{log_tail(record)}")


def stop(record: ProcessRecord, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the recorded process and everything in its process group. False if it had already
    gone (its group is still swept, in case children outlived it)."""
    was_running = is_running(record)
    if was_running:
        _signal_pid(record.pid, signal.SIGTERM)
        _wait_gone(lambda: is_running(record), grace_s)
    # The leader's PID is its session's and group's id; children that stayed in it go too. When
    # the leader is gone its id cannot have been reused while the group still has members, but
    # a live process with that PID and another start time means the group is not ours.
    if was_running or start_ticks(record.pid) is None:
        _signal_group(record.pid, signal.SIGTERM)
        _wait_gone(lambda: bool(group_members(record.pid)), grace_s / 4)
        _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(lambda: bool(group_members(record.pid)), 5.0)
    _reap(record.pid)
    return was_running


def log_tail(record: ProcessRecord, chars: int = 2000) -> str:
    try:
        return Path(record.log).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    # Only a group whose leader we started: the record's PID is its pgid (start_new_session).
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(alive: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
