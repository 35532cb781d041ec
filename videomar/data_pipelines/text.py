"""Caption embeddings for a precompute run: each distinct caption not yet in the dataset is encoded
once by a local Hugging Face text model on a Ray Data actor pool (one model per actor, on its GPU
when it has one), and written to Parquet beside the latents (``artifacts/text_shards``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videomar.artifacts.models import local_folder
from videomar.artifacts.text_shards import read_text_keys, text_key, text_shard_uris, write_text_shard
from videomar.data_pipelines.encode import pick_device
from videomar.ray_env import gpus_per_worker


@dataclass(frozen=True)
class TextConfig:
    path: str  # Hugging Face model folder: local, or s3:// (copied once per machine; never from the Hub)
    max_length: int = 300  # tokens per caption, at most
    batch_size: int = 32  # captions per encoder call
    workers: int = 1  # actors in the encoder pool
    gpus: float | str = "auto"  # GPUs per actor; auto = 1 when the cluster has GPUs


@dataclass(frozen=True)
class TextResult:
    encoder_id: str
    width: int
    distinct: int  # distinct captions of the dataset
    encoded: int  # captions encoded by this run (the others were already there)


class CaptionEncoder:
    """Ray Data callable: a batch of captions -> their embeddings (the real tokens only)."""

    def __init__(self, path: str, max_length: int, threads: int = 1):
        import torch

        from videomar.model.text import HFTextEncoder

        torch.set_num_threads(threads)
        self.encoder = HFTextEncoder(local_folder(path), max_len=max_length, device=pick_device())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        text = self.encoder.encode([str(c) for c in batch["caption"]])
        lengths = text.mask.sum(1).tolist()
        emb = text.embeddings.cpu().numpy()  # [B, L, width]
        out = np.empty(len(lengths), dtype=object)
        out[:] = [emb[i, :n].tobytes() for i, n in enumerate(lengths)]
        return {"key": batch["key"], "caption": batch["caption"], "tokens": np.asarray(lengths), "embedding": out}


def encoder_identity(path: str) -> tuple[str, int]:
    """(content id, width) of a text model folder, read from its files and config."""
    import transformers

    from videomar.model.text import folder_id

    path = local_folder(path)
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    return folder_id(path), int(getattr(config, "hidden_size", None) or config.d_model)


def embed_captions(cfg: TextConfig, output: str, captions: list[str], remote: dict) -> TextResult:
    """Encode the distinct ``captions`` not yet in ``output``'s text shards; one shard per batch."""
    import ray.data

    encoder_id, width = encoder_identity(cfg.path)
    distinct = sorted(set(captions))
    done = read_text_keys(text_shard_uris(output))
    todo = [{"key": k, "caption": c} for c in distinct if (k := text_key(encoder_id, cfg.max_length, c)) not in done]
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // cfg.batch_size, 64)))
        ds = ds.map_batches(CaptionEncoder, fn_constructor_kwargs={"path": cfg.path, "max_length": cfg.max_length},
                            batch_size=cfg.batch_size, compute=ray.data.ActorPoolStrategy(size=cfg.workers),
                            num_gpus=gpus_per_worker(cfg.gpus) or None, **remote)
        for batch in ds.iter_batches(batch_size=cfg.batch_size, batch_format="numpy"):
            embeddings = [np.frombuffer(b, np.float32).reshape(-1, width) for b in batch["embedding"]]
            write_text_shard(output, encoder_id, width, [str(k) for k in batch["key"]],
                             [str(c) for c in batch["caption"]], embeddings)
    return TextResult(encoder_id=encoder_id, width=width, distinct=len(distinct), encoded=len(todo))
