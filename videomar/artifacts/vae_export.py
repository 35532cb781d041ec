"""The VAE export: a folder (local or s3://) with the VAE's weights and config.json, written so
that a reader never sees half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from videomar.artifacts import storage
from videomar.artifacts.layout import CONFIG_FILE, WEIGHTS_FILE
from videomar.model.vae import VideoVAE


def write_vae_export(vae: VideoVAE, output: str) -> None:
    """Export so that a reader never sees a half export: locally into a temporary sibling folder
    renamed into place; on S3 the old config first removed, the weights written, the config last."""
    if storage.is_s3(output):
        with tempfile.TemporaryDirectory(prefix="videomar-vae-export-") as tmp:
            vae.export(tmp)
            fs, path = storage.filesystem(output)
            if storage.exists(storage.join(output, CONFIG_FILE)):
                fs.delete_file(f"{path}/{CONFIG_FILE}")
            for name in (WEIGHTS_FILE, CONFIG_FILE):
                storage.write_bytes_atomic(storage.join(output, name), Path(tmp, name).read_bytes())
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    vae.export(str(staging))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
