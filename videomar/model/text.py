"""Text conditioning. A TextBatch carries either byte ids for the built-in `bytes` encoder (trained
with the model) or precomputed embeddings (e.g. from HFTextEncoder), with a padding mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from videomar.errors import ConfigError

BOS, PAD = 256, 257  # byte ids 0-255, then begin-of-text (every caption has one) and padding
BYTES_VOCAB = 258


@dataclass(frozen=True)
class TextBatch:
    mask: torch.Tensor  # [B, L] bool, True = a real token; every row has at least one
    tokens: torch.Tensor | None = None  # [B, L] long (bytes encoder)
    embeddings: torch.Tensor | None = None  # [B, L, text_dim] (precomputed)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def to(self, device) -> "TextBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TextBatch(move(self.mask), move(self.tokens), move(self.embeddings))

    def select(self, index: torch.Tensor) -> "TextBatch":
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return TextBatch(pick(self.mask), pick(self.tokens), pick(self.embeddings))

    def repeat(self, n: int) -> "TextBatch":
        idx = torch.arange(len(self), device=self.mask.device).repeat(n)
        return self.select(idx)


def tokenize_bytes(captions: list[str], max_len: int) -> TextBatch:
    """UTF-8 bytes with a leading BOS, truncated to max_len, padded to the longest caption."""
    rows = [[BOS] + list(c.encode("utf-8"))[: max_len - 1] for c in captions]
    length = max((len(r) for r in rows), default=1)
    tokens = torch.full((len(rows), length), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return TextBatch(mask=mask, tokens=tokens)


class BytesTextEncoder(nn.Module):
    """Learned byte embeddings plus learned positions: no download, trained with the model."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(BYTES_VOCAB, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] -> [B, L, dim]."""
        return self.embed(tokens) + self.pos[: tokens.shape[1]]


class HFTextEncoder:
    """A frozen Hugging Face encoder loaded from a local directory (optional extra `hf`).

    Produces precomputed embeddings (last hidden state + mask) for models configured with
    ``text_encoder: precomputed``. Nothing is downloaded: a missing directory is an error.
    """

    def __init__(self, path: str | Path, max_len: int = 300, device: str = "cpu"):
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"text encoder directory {path} does not exist (nothing is downloaded)")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ConfigError("the HF text encoder needs the optional extra: pip install 'videomar[hf]'") from None
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.max_len = max_len
        self.device = device
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> TextBatch:
        enc = self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_len,
                             return_tensors="pt").to(self.device)
        out = self.model(**enc).last_hidden_state  # [B, L, dim]
        mask = enc["attention_mask"].bool()
        mask[:, 0] = True  # an all-padding row would make attention undefined
        return TextBatch(mask=mask, embeddings=out.float())


def with_null(text: TextBatch, drop: torch.Tensor) -> torch.Tensor:
    """Rows to replace by the learned null text: returns the new mask [B, L] (first token only)."""
    first = torch.zeros_like(text.mask)
    first[:, 0] = True
    return torch.where(drop[:, None], first, text.mask)


def check_text(text: TextBatch, batch: int, encoder: str) -> None:
    if len(text) != batch:
        raise ConfigError(f"text batch has {len(text)} rows but latents have {batch}")
    if encoder == "bytes" and text.tokens is None:
        raise ConfigError("model.text_encoder='bytes' needs TextBatch.tokens (use model.tokenize)")
    if encoder == "precomputed" and text.embeddings is None:
        raise ConfigError("model.text_encoder='precomputed' needs TextBatch.embeddings")


