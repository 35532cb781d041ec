"""Everything a verb's process and its children write goes to a log file; the console keeps a
handle on the terminal for the live view.

The redirection is of file descriptors 1 and 2, not of ``sys.stdout``: Ray's C++ core worker,
the raylet it starts, DeepSpeed, MLflow, Python's warnings and logging handlers and the lines
Ray forwards from its workers (``log_to_driver``: Ray Train's and Ray Data's workers, rank 0's
prints) all end up on those descriptors, whoever opened them and whenever.
"""

from __future__ import annotations

import os
import re
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

# Lines of the log that say nothing about a failure (Ray's periodic status, blank lines, bars).
_NOISE = re.compile(r"^\s*$|^log: .*--verbose shows it all here|PlacementGroupCleaner|logging_progress\.py|Running Dataset|core_worker\.cc|"
                    r"real_accelerator\.py|FutureWarning|Requesting resources|Active & requested|\x1b\[[0-9;]*m\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Capture:
    """Descriptors 1 and 2 pointed at ``path`` (appended to) until ``stop``; ``terminal`` is a
    text stream on what descriptor 1 was."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.saved = (os.dup(1), os.dup(2))
        log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        self.terminal: TextIO = _text(os.dup(self.saved[0]))
        # Python's own streams too, in case a caller had replaced them (a test harness's capture
        # writes to its file, not to descriptors 1 and 2).
        self.streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _text(1, closefd=False), _text(2, closefd=False)

    def stop(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = self.streams
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.terminal.close()


def _text(fd: int, closefd: bool = True) -> TextIO:
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=closefd)


def relevant_tail(path: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` lines of the log that may say why something failed (Ray's periodic
    status and blank lines left out, colours removed)."""
    if not path.is_file():
        return []
    kept: deque[str] = deque(maxlen=lines)
    with path.open(errors="replace") as f:
        for line in f:
            line = _ANSI.sub("", line.rstrip())
            if not _NOISE.search(line):
                kept.append(line)
    return list(kept)


def reason(err: BaseException) -> str:
    """One line saying why: the innermost exception's own last line (Ray wraps a worker's error
    and its traceback in its message; its last ``Name: message`` line is the cause)."""
    while err.__cause__ is not None and not str(err).strip():
        err = err.__cause__
    text = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    named = [line for line in text if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?", line)]
    last = named[-1] if named else (text[-1] if text else "")
    return f"{type(err).__name__}: {last}" if last and not named else (last or type(err).__name__)
