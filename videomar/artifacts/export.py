"""The stage export: what serving, evaluation and the next stage read.

An export is a directory (local or s3://) holding

    model.safetensors   the EMA weights (fp32)
    config.json         model config, latent shape and scale, trained bucket, VAE id, step
    spec.yaml           the resolved spec of the stage that wrote it
    vae/                the VAE export, so an export is self-contained
    COMPLETE            written last: an export without it is refused

Readers go through ``load_export`` (or ``export_weights``/``read_export_config``), which refuse
an incomplete export and name it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from videomar.artifacts import storage
from videomar.artifacts.layout import COMPLETE_MARKER, CONFIG_FILE, SPEC_FILE, VAE_DIR, WEIGHTS_FILE
from videomar.errors import ConfigError
from videomar.model.config import ModelConfig
from videomar.model.vae import load_vae
from videomar.artifacts.models import local_folder
from videomar.model.text import CachedTextEncoder, HFTextEncoder, folder_id
from videomar.model.videomar import build_model

EXPORT_FORMAT = 1
PROMPT_CACHE = 1024  # prompt embeddings a serving replica keeps


class IncompleteExportError(ConfigError):
    """The export has no COMPLETE marker (its writer did not finish) or does not exist."""


@dataclass
class Export:
    """A loaded export: the model in eval mode, its VAE, and config.json as a dict."""

    uri: str
    model: Any  # videomar.model.videomar.VideoMAR
    vae: Any  # videomar.model.vae.VideoVAE
    config: dict[str, Any]

    @property
    def latent_scale(self) -> float:
        return float(self.config["latent"]["scale"])


def check_complete(uri: str, field: str = "export") -> None:
    """Raise IncompleteExportError naming ``uri`` (and the spec field) unless it is complete."""
    if not storage.exists(storage.join(uri, COMPLETE_MARKER)):
        what = "does not exist" if not storage.exists(storage.join(uri, CONFIG_FILE)) else (
            f"is incomplete: no {COMPLETE_MARKER} marker (the stage writing it has not finished)")
        raise IncompleteExportError(f"{field}: export {uri} {what}")


def is_export(uri: str) -> bool:
    """True when ``uri`` looks like an export (complete or not) rather than a checkpoint."""
    return storage.exists(storage.join(uri, CONFIG_FILE)) or storage.exists(storage.join(uri, WEIGHTS_FILE))


def write_export(
    uri: str,
    weights: dict[str, torch.Tensor],
    config: dict[str, Any],
    spec_yaml: str,
    vae_uri: str | None,
) -> None:
    """Write an export; any old COMPLETE marker goes first, the new one last."""
    marker = storage.join(uri, COMPLETE_MARKER)
    if storage.exists(marker):
        fs, path = storage.filesystem(marker)
        fs.delete_file(path)
    if vae_uri:
        storage.copy_tree(vae_uri, storage.join(uri, VAE_DIR))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in weights.items()}
    storage.write_bytes_atomic(storage.join(uri, WEIGHTS_FILE), save_safetensors(tensors))
    body = {"format": EXPORT_FORMAT, **config, "has_vae": bool(vae_uri)}
    storage.write_bytes_atomic(storage.join(uri, CONFIG_FILE), json.dumps(body, indent=2).encode())
    storage.write_bytes_atomic(storage.join(uri, SPEC_FILE), spec_yaml.encode())
    storage.write_bytes_atomic(marker, b"")


def read_export_config(uri: str, field: str = "export") -> dict[str, Any]:
    check_complete(uri, field)
    return json.loads(storage.read_bytes(storage.join(uri, CONFIG_FILE)))


def export_weights(uri: str, field: str = "export") -> dict[str, torch.Tensor]:
    """The EMA weights of a complete export, as a CPU state dict."""
    check_complete(uri, field)
    return load_safetensors(storage.read_bytes(storage.join(uri, WEIGHTS_FILE)))


def load_export(uri: str, device: str | torch.device = "cpu") -> Export:
    """Load a complete export: VideoMAR (eval mode, EMA weights) on ``device`` plus its VAE."""
    config = read_export_config(uri)
    model = build_model(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(export_weights(uri))
    model.to(device).eval()
    return Export(uri=str(uri), model=model, vae=_load_vae(uri, config, device), config=config)


def attach_prompt_encoder(export: Export, device, cache_size: int = PROMPT_CACHE) -> Export:
    """A model on precomputed text embeds prompts with the text encoder its export records (the
    one the training captions were embedded with, checked by its content id), keeping the
    embeddings of the ``cache_size`` most recent prompts. Other models are left as they are."""
    if export.model.config.text_encoder != "precomputed":
        return export
    text = export.config.get("text_encoder")
    if not text:
        raise ConfigError(f"export {export.uri}: model.text_encoder='precomputed' but config.json records no "
                          f"text_encoder to embed prompts with")
    path = local_folder(text["path"]) if storage.exists(storage.join(text["path"], CONFIG_FILE)) else None
    if path is None:
        raise ConfigError(f"export {export.uri}: its text encoder {text['path']} is not there; put the same model "
                          f"folder there (nothing is downloaded from the Hub)")
    if folder_id(path) != text["encoder_id"]:
        raise ConfigError(f"export {export.uri}: the text encoder at {text['path']} is not the one the captions were "
                          f"embedded with (id {text['encoder_id']})")
    encoder = HFTextEncoder(path, max_len=int(text["max_length"]), device=str(device))
    export.model.use_text_source(CachedTextEncoder(encoder, cache_size))
    return export


def _load_vae(uri: str, config: dict[str, Any], device) -> Any:
    if not config.get("has_vae"):
        return None

    vae_uri = storage.join(uri, VAE_DIR)
    if not storage.is_s3(vae_uri):
        return load_vae(vae_uri).to(device).eval()
    with tempfile.TemporaryDirectory(prefix="videomar-export-vae-") as local:
        storage.copy_tree(vae_uri, local)
        return load_vae(local).to(device).eval()  # the weights are in memory once loaded


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local directory with the export's files (the export itself when it is local; else a
    temporary download, removed afterwards)."""
    if not storage.is_s3(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="videomar-export-") as local:
        storage.copy_tree(uri, local)
        yield Path(local)
