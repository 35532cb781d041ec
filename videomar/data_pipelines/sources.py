"""Listing the inputs of a precompute run: a local folder, an ``s3://`` prefix, or a manifest file
(CSV, JSONL or Parquet with ``path``, ``caption`` and optional ``start``/``end`` frame bounds).

Every input becomes a VideoSource with an absolute location (Ray workers run elsewhere) and an
identity (size and modification time) that goes into the content keys of its clips, so a changed
file is encoded again and an unchanged one never is.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from videomar.artifacts import storage

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")
# In a folder source, ``NAME.txt`` beside a video ``NAME.ext`` holds its caption.
CAPTION_SUFFIX = ".txt"


@dataclass(frozen=True)
class VideoSource:
    uri: str  # absolute local path or s3:// URI
    caption: str
    identity: str  # "size:mtime"; "missing" when the file does not exist
    name: str  # the path as listed (relative to the folder or manifest): decides the train/val split
    start: int = 0  # first usable frame
    end: int | None = None  # one past the last usable frame (None = to the end)

    def row(self) -> dict:
        return {**asdict(self), "end": -1 if self.end is None else self.end}


def is_manifest(uri: str) -> bool:
    return str(uri).lower().endswith(MANIFEST_SUFFIXES)


def list_sources(source: str) -> list[VideoSource]:
    """The inputs named by ``source`` (a folder, an s3:// prefix or a manifest), sorted by URI."""
    source = storage.absolute(source)
    if is_manifest(source):
        return manifest_sources(source)
    files = storage.list_files(source)
    if not files:
        raise FileNotFoundError(f"source: {source} has no files (expected a folder, an s3:// prefix or a "
                                f"manifest ending in {', '.join(MANIFEST_SUFFIXES)})")
    names = {rel for rel, _, _ in files}
    out = []
    for rel, size, mtime in files:
        if rel.rsplit("/", 1)[-1].startswith(".") or rel.endswith(CAPTION_SUFFIX):
            continue
        caption_rel = rel.rsplit(".", 1)[0] + CAPTION_SUFFIX
        caption = storage.read_bytes(storage.join(source, caption_rel)).decode().strip() if caption_rel in names else ""
        out.append(VideoSource(uri=storage.join(source, rel), caption=caption, identity=f"{size}:{mtime}", name=rel))
    return out


def manifest_sources(uri: str) -> list[VideoSource]:
    """Rows of a CSV/JSONL/Parquet manifest; relative paths resolve against the manifest's folder."""
    rows = read_manifest_rows(uri)
    base = storage.folder_of(uri)
    out = []
    for number, row in enumerate(rows, start=1):
        path = str(row.get("path") or "").strip()
        if not path:
            raise ValueError(f"{uri}: row {number} has no 'path'")
        location = storage.resolve(path, base)
        out.append(VideoSource(
            uri=location, caption=str(row.get("caption") or ""), identity=identity(location), name=path,
            start=int(row.get("start") or 0), end=None if row.get("end") in (None, "") else int(row["end"]),
        ))
    return sorted(out, key=lambda s: s.uri)


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
