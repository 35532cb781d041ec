"""Pretrained model folders (a text encoder) given as a local path or an s3:// prefix: an s3://
folder is copied once per machine into a cache named by its URI, and read from there."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from videomar.artifacts import storage

CACHE = Path(os.environ.get("VIDEOMAR_MODEL_CACHE", Path.home() / ".cache" / "videomar" / "models"))
DONE = ".videomar-complete"  # written last into a cached copy: a copy without it is made again


def local_folder(uri: str) -> str:
    """The local folder holding ``uri``'s files (``uri`` itself when it is local)."""
    if not storage.is_s3(uri):
        return uri
    target = CACHE / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if not (target / DONE).exists():
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        storage.copy_tree(uri, str(staging))
        (staging / DONE).write_text(uri)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return str(target)
