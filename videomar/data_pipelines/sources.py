"""Listing the inputs of a precompute run: a local folder, an ``s3://`` prefix, or a manifest file
(CSV, JSONL or Parquet with ``path``, ``caption`` and optional ``start``/``end`` frame bounds).

Every input becomes a VideoSource with an absolute location (Ray workers run elsewhere) and an
identity (size and modification time) that goes into the content keys of its clips, so a changed
file is encoded again and an unchanged one never is.

Every entry the user pointed at is accounted for: one that cannot be an input (a dangling link, an
unreadable file, a folder named like a video, a folder that cannot be listed, an unreadable
caption, a manifest row without a path or pointing outside the manifest's folder) is still a
VideoSource, carrying its ``problem``, and becomes a row of the errors table (stage ``list``).
Local folders are walked as walk.py says (links to folders followed once, by real path).
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from dataclasses import asdict, dataclass

from videomar.artifacts import storage
from videomar.data_pipelines.walk import walk

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")
# In a folder source, ``NAME.txt`` beside a video ``NAME.ext`` holds its caption.
CAPTION_SUFFIX = ".txt"


class SourceProblem(ValueError):
    """An entry of the source that cannot be an input (the errors table's error_class)."""


@dataclass(frozen=True)
class VideoSource:
    uri: str  # absolute local path or s3:// URI
    caption: str
    identity: str  # "size:mtime"; "missing" when the file does not exist
    name: str  # the path as listed (relative to the folder or manifest): decides the train/val split
    start: int = 0  # first usable frame
    end: int | None = None  # one past the last usable frame (None = to the end)
    problem: str = ""  # why this entry cannot be read; "" for a usable input

    def row(self) -> dict:
        return {**asdict(self), "end": -1 if self.end is None else self.end}


def is_manifest(uri: str) -> bool:
    return str(uri).lower().endswith(MANIFEST_SUFFIXES)


def list_sources(source: str, outside_manifest: bool = False) -> list[VideoSource]:
    """The inputs named by ``source`` (a folder, an s3:// prefix or a manifest), sorted by URI.
    ``outside_manifest`` lets manifest paths leave the manifest's folder."""
    source = storage.absolute(source)
    if is_manifest(source):
        return manifest_sources(source, outside_manifest)
    if storage.is_s3(source):
        files, problems = storage.list_files(source), []
    else:
        entries, found = walk(source) if os.path.isdir(source) else ([], [])
        files, problems = [(e.rel, e.size, e.mtime) for e in entries], found
    if not files and not problems:
        raise FileNotFoundError(f"source: {source} has no files (expected a folder, an s3:// prefix or a "
                                f"manifest ending in {', '.join(MANIFEST_SUFFIXES)})")
    names = {rel for rel, _, _ in files}
    out = [VideoSource(uri=storage.join(source, p.rel), caption="", identity="missing", name=p.rel, problem=p.reason)
           for p in problems]
    for rel, size, mtime in files:
        if rel.rsplit("/", 1)[-1].startswith(".") or rel.endswith(CAPTION_SUFFIX):
            continue
        caption, problem = read_caption(source, rel, names)
        out.append(VideoSource(uri=storage.join(source, rel), caption=caption, identity=f"{size}:{mtime}", name=rel,
                               problem=problem))
    return sorted(out, key=lambda s: s.uri)


def read_caption(source: str, rel: str, names: set[str]) -> tuple[str, str]:
    """(caption, problem) of the video at ``rel``: its ``.txt`` neighbour, "" when there is none."""
    caption_rel = rel.rsplit(".", 1)[0] + CAPTION_SUFFIX
    if caption_rel not in names:
        return "", ""
    try:
        return storage.read_bytes(storage.join(source, caption_rel)).decode("utf-8").strip(), ""
    except (OSError, UnicodeDecodeError) as err:
        return "", f"caption file {caption_rel}: cannot read it as UTF-8 text ({type(err).__name__})"


def manifest_sources(uri: str, outside_manifest: bool = False) -> list[VideoSource]:
    """Rows of a CSV/JSONL/Parquet manifest; relative paths resolve against the manifest's folder,
    and a path leaving that folder is a problem unless ``outside_manifest``."""
    rows = read_manifest_rows(uri)
    base = storage.folder_of(uri)
    out = []
    for number, row in enumerate(rows, start=1):
        path = str(row.get("path") or "").strip()
        location = storage.resolve(path, base) if path else f"{uri}#row{number}"
        problem = "" if path else f"row {number} has no 'path'"
        if path and not outside_manifest and not inside(location, base):
            problem = f"{path}: outside the manifest's folder {base} (the spec's source_outside_manifest allows it)"
        try:
            start, end = int(row.get("start") or 0), None if row.get("end") in (None, "") else int(row["end"])
        except (TypeError, ValueError):
            start, end, problem = 0, None, problem or f"row {number}: start and end must be whole frame numbers"
        out.append(VideoSource(uri=location, caption=str(row.get("caption") or ""), name=path or location,
                               identity="missing" if problem else identity(location), start=start, end=end,
                               problem=problem))
    return sorted(out, key=lambda s: s.uri)


def inside(location: str, folder: str) -> bool:
    """Whether ``location`` is below ``folder`` once ``..`` and (locally) links are resolved."""
    if storage.is_s3(location) or storage.is_s3(folder):
        if not (storage.is_s3(location) and storage.is_s3(folder)):
            return False
        return posixpath.normpath(location[5:]).startswith(posixpath.normpath(folder[5:]).rstrip("/") + "/")
    real_folder = os.path.realpath(folder)
    return os.path.realpath(location).startswith(real_folder.rstrip(os.sep) + os.sep)


def read_manifest_rows(uri: str) -> list[dict]:
    data = storage.read_bytes(uri)
    lower = uri.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    text = data.decode()
    if lower.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(text)))
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{uri}: line {number} is not JSON: {err}") from None
    return rows


def identity(uri: str) -> str:
    """``size:mtime`` of a file, or ``missing``."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return "missing"
    mtime = info.mtime.timestamp() if info.mtime is not None else None
    return f"{info.size}:{mtime}"
