"""Parquet text-embedding shards: ``<dataset>/text/part-<hash>.parquet``, beside the latents.

One row per distinct caption: its key (a hash of the caption, the encoder's id and max length),
the caption, its token count ``tokens`` and ``embedding``, the encoder's last hidden state of
those tokens ([tokens, width] float32, flattened). The mask of a caption is its first ``tokens``
positions (the encoder pads on the right). The footer (``videomar``) records the encoder id and
width. Shards are named by the keys they hold and written whole, like the latent shards.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json

import numpy as np

from videomar.artifacts import storage

TEXT_DIR = "text"
META_KEY = b"videomar"


def text_key(encoder_id: str, max_length: int, caption: str) -> str:
    """The hash that names one caption's embedding: same encoder, length and caption -> same key."""
    return hashlib.sha256(json.dumps([encoder_id, int(max_length), caption]).encode()).hexdigest()[:32]


def text_dir(output: str) -> str:
    return storage.join(output, TEXT_DIR)


def write_text_shard(output: str, encoder_id: str, width: int, keys: list[str], captions: list[str],
                     embeddings: list[np.ndarray]) -> str:
    """Write one shard; ``embeddings[i]`` is float32 [tokens_i, width]. Returns its URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = "part-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24] + ".parquet"
    uri = storage.join(text_dir(output), name)
    flat = [np.ascontiguousarray(e, dtype=np.float32).reshape(-1) for e in embeddings]
    table = pa.table({
        "key": keys, "caption": captions, "tokens": pa.array([len(e) for e in embeddings], pa.int32()),
        "embedding": pa.array(flat, pa.list_(pa.float32())),
    }).replace_schema_metadata({META_KEY: json.dumps({"encoder_id": encoder_id, "width": int(width)}).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(uri, buf.getvalue())
    return uri


def text_shard_uris(output: str) -> list[str]:
    return [u for u in storage.list_dir(text_dir(output)) if u.endswith(".parquet")]


def _read(uri: str, columns: list[str]):
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as f:
        return pq.read_table(f, columns=columns)


def read_text_keys(uris: list[str]) -> set[str]:
    """The caption keys held by the given shards (only the ``key`` column is read)."""
    keys: set[str] = set()
    for uri in uris:
        keys.update(_read(uri, ["key"]).column("key").to_pylist())
    return keys


def read_embeddings(uris: list[str], text: dict, captions: set[str] | None = None) -> dict[str, np.ndarray]:
    """caption -> float32 [tokens, width] from the given shards, for the encoder a manifest's
    ``text`` record names (rows of other encoders are skipped); only ``captions``, when given."""
    encoder_id, max_length, width = text["encoder_id"], int(text["max_length"]), int(text["width"])
    out: dict[str, np.ndarray] = {}
    for uri in uris:
        table = _read(uri, ["key", "caption", "embedding"])
        keys, names = table.column("key").to_pylist(), table.column("caption").to_pylist()
        column = table.column("embedding")
        for i, caption in enumerate(names):
            if (captions is None or caption in captions) and keys[i] == text_key(encoder_id, max_length, caption):
                out[caption] = np.array(column[i].values, dtype=np.float32).reshape(-1, width)  # writable
    return out


@functools.lru_cache(maxsize=2)
def embedding_table(manifest_uri: str, text_json: str):
    """Every caption embedding of a dataset's text encoder (``text_json``: the manifest's record)
    as an EmbeddingTable; loaded once per process."""
    from videomar.model.text import EmbeddingTable

    folder = storage.folder_of(manifest_uri)
    return EmbeddingTable(read_embeddings(text_shard_uris(folder), json.loads(text_json)), where=folder)


def attach_text(model, manifest_uri: str | None, text: dict | None):
    """Give a model on precomputed text the embeddings of the dataset ``manifest_uri`` (whose
    manifest's text record is ``text``): training and evaluation read captions' embeddings there.
    Models on the bytes encoder are returned as they are."""
    if model.config.text_encoder == "precomputed" and text and manifest_uri:
        model.use_text_source(embedding_table(manifest_uri, json.dumps(text, sort_keys=True)))
    return model
