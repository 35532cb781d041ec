"""Precomputed text conditioning without Ray: a T5 encoder and a decoder-only LLM from local
folders, the Parquet text shards (keyed by caption and encoder), the dataset's embedding table,
the serving cache of prompt embeddings, and the learned null sequence for guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.pretrained import TEXT_WIDTH, text_encoder
from videomar.artifacts.text_shards import read_embeddings, read_text_keys, text_key, text_shard_uris, write_text_shard
from videomar.errors import ConfigError
from videomar.model.config import model_config
from videomar.model.text import CachedTextEncoder, EmbeddingTable, HFTextEncoder, folder_id
from videomar.model.videomar import build_model

pytest.importorskip("transformers")
CAPTIONS = ["a handwritten 3 moving up", "a digit", "a handwritten 3 moving up and left"]


@pytest.mark.parametrize("kind", ["t5", "llm"])
def test_local_text_models_embed_each_caption_alike_alone_or_batched(tmp_path, kind):
    folder = text_encoder(kind, tmp_path / kind)
    encoder = HFTextEncoder(folder, max_len=8)
    assert encoder.dim == TEXT_WIDTH
    batch = encoder.encode(CAPTIONS)
    assert batch.embeddings.shape[0] == 3 and batch.embeddings.shape[2] == TEXT_WIDTH
    assert batch.mask.shape[1] <= 8 and batch.mask[1].tolist() == sorted(batch.mask[1].tolist(), reverse=True)
    alone = encoder.encode([CAPTIONS[1]])
    n = int(alone.mask.sum())
    torch.testing.assert_close(batch.embeddings[1, :n], alone.embeddings[0, :n], atol=1e-5, rtol=1e-4)
    assert folder_id(folder) == folder_id(folder) != folder_id(text_encoder(kind, tmp_path / "other", seed=1))


def test_text_shards_keep_one_row_per_caption_and_encoder(tmp_path):
    out = str(tmp_path / "dataset")
    rows = [np.random.default_rng(i).standard_normal((i + 2, 4)).astype(np.float32) for i in range(2)]
    keys = [text_key("enc-a", 16, c) for c in CAPTIONS[:2]]
    write_text_shard(out, "enc-a", 4, keys, CAPTIONS[:2], rows)
    write_text_shard(out, "enc-b", 4, [text_key("enc-b", 16, CAPTIONS[0])], CAPTIONS[:1], [rows[1]])
    uris = text_shard_uris(out)
    assert len(uris) == 2 and read_text_keys(uris) >= set(keys)
    found = read_embeddings(uris, {"encoder_id": "enc-a", "max_length": 16, "width": 4})
    assert sorted(found) == sorted(CAPTIONS[:2])
    np.testing.assert_array_equal(found[CAPTIONS[0]], rows[0])  # enc-b's row for it is not enc-a's
    table = EmbeddingTable(found, where=out)
    text = table([CAPTIONS[1], CAPTIONS[0]])
    assert text.embeddings.shape == (2, 3, 4) and text.mask.tolist() == [[True] * 3, [True, True, False]]
    with pytest.raises(ConfigError, match="'unknown'.*no precomputed embedding"):
        table(["unknown"])


def test_prompt_cache_encodes_each_prompt_once_and_forgets_the_oldest(tmp_path):
    encoder = HFTextEncoder(text_encoder("llm", tmp_path / "llm"), max_len=8)
    cached = CachedTextEncoder(encoder, size=2)
    first = cached(CAPTIONS[:2])
    again = cached(CAPTIONS[:2])
    assert cached.calls == 1 and torch.equal(first.embeddings, again.embeddings)
    cached([CAPTIONS[2]])
    assert list(cached.cache) == CAPTIONS[1:] and cached.calls == 2


def test_precomputed_model_uses_its_text_source_and_a_learned_null_sequence(tmp_path):
    model = build_model(model_config("tiny", text_encoder="precomputed", text_dim=TEXT_WIDTH, text_max_len=6,
                                     latent_channels=4))
    assert tuple(model.null_text.shape) == (6, TEXT_WIDTH)
    with pytest.raises(ConfigError, match="no text source"):
        model.tokenize(["a digit"])
    encoder = HFTextEncoder(text_encoder("t5", tmp_path / "t5"), max_len=8)
    text = model.use_text_source(CachedTextEncoder(encoder)).tokenize(["a digit", "a handwritten 3"])
    ctx = model.encode_text(text, drop=torch.tensor([True, False]))
    assert ctx.mask.shape[1] >= 6 and ctx.mask[0].tolist() == [True] * 6 + [False] * (ctx.mask.shape[1] - 6)
    torch.testing.assert_close(ctx.embeddings[0, :6], model.null_text)
    assert torch.isfinite(model.training_loss(torch.randn(2, 4, 2, 4, 4), text))
