"""Reading a secret token from a file: refused, naming the file, when unreadable or empty; never
printed."""

from __future__ import annotations

from pathlib import Path


def read_token_file(path: Path, where: str, error: type[Exception]) -> str:
    """The token in ``path``, stripped. ``error`` (naming ``where``, the setting that named the
    file) when the file cannot be read or holds nothing."""
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise error(f"{where} {path}: cannot read the token: {err.strerror or err}") from None
    if not token:
        raise error(f"{where} {path}: the token file is empty")
    return token
