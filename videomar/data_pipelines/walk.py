"""Walking a local source folder so that every entry the user pointed at is accounted for.

Each entry is either a file to read (``Entry``) or a problem (``Problem``: a dangling link, an
unreadable file, a folder named like a video, a FIFO or device, a folder that cannot be listed),
which the precompute turns into a row of its errors table. Symbolic links to folders are followed
once, by their real path: a link back up the tree (``sub/loop -> ..``) or a second link to a
folder already walked lists nothing again, and a file reached by two paths is listed once. Links
are followed after the whole tree of real folders is walked, so a file reachable both by its real
path and through a link is listed by its real path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

# Names the precompute expects to be video files; a folder with one of them is an error row.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


@dataclass(frozen=True)
class Entry:
    rel: str  # path below the folder, with "/" separators
    size: int
    mtime: float


@dataclass(frozen=True)
class Problem:
    rel: str
    reason: str


def looks_like_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def walk(folder: str) -> tuple[list[Entry], list[Problem]]:
    """Files and problems below ``folder`` (local, absolute), each sorted by relative path."""
    state = _Walk()
    state.folder(folder, "")
    while state.links:  # breadth-first, after the real tree; a linked folder's links queue up
        state.entry(*state.links.pop(0))
    return sorted(state.entries, key=lambda e: e.rel), sorted(state.problems, key=lambda p: p.rel)


class _Walk:
    def __init__(self):
        self.entries: list[Entry] = []
        self.problems: list[Problem] = []
        self.seen_folders: set[str] = set()  # real paths
        self.seen_files: set[str] = set()
        self.links: list[tuple[os.DirEntry, str]] = []  # followed once the real tree is walked

    def folder(self, path: str, rel: str) -> None:
        real = os.path.realpath(path)
        if real in self.seen_folders:  # a loop, or a folder already reached by another path
            return
        self.seen_folders.add(real)
        try:
            with os.scandir(path) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as err:
            self.problems.append(Problem(rel or ".", f"cannot list the folder: {err.strerror or err}"))
            return
        for child in children:
            child_rel = f"{rel}/{child.name}" if rel else child.name
            if child.is_symlink():
                self.links.append((child, child_rel))
            else:
                self.entry(child, child_rel)

    def entry(self, child: os.DirEntry, rel: str) -> None:
        if child.name.startswith(".") and not child.is_dir():
            return  # hidden files (.DS_Store, editors' swap files) are not inputs
        try:
            info = os.stat(child.path)  # follows links
        except OSError as err:
            reason = "a dangling symbolic link" if child.is_symlink() else "cannot read its metadata"
            self.problems.append(Problem(rel, f"{reason} ({err.strerror or err})"))
            return
        if stat.S_ISDIR(info.st_mode):
            if looks_like_video(child.name):
                self.problems.append(Problem(rel, "a folder named like a video (its files are listed too)"))
            self.folder(child.path, rel)
        elif not stat.S_ISREG(info.st_mode):
            self.problems.append(Problem(rel, "not a regular file (a FIFO, socket or device)"))
        elif not os.access(child.path, os.R_OK):
            self.problems.append(Problem(rel, "cannot read the file (permission denied)"))
        else:
            real = os.path.realpath(child.path)
            if real not in self.seen_files:
                self.seen_files.add(real)
                self.entries.append(Entry(rel, int(info.st_size), info.st_mtime))
