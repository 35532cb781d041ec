"""Text conditioning. A TextBatch carries either byte ids for the built-in `bytes` encoder (trained
with the model) or precomputed embeddings (e.g. from HFTextEncoder), with a padding mask."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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
    """A frozen Hugging Face text model loaded from a local directory (optional extra `hf`).

    An encoder (T5 and the like: its encoder alone is loaded) or a decoder-only LLM (its last
    hidden state is taken). Produces embeddings (last hidden state + mask) for models configured
    with ``text_encoder: precomputed``. Nothing is downloaded: a missing directory is an error.
    Padding is on the right, so a caption's real tokens come first and its mask is a prefix.
    """

    def __init__(self, path: str | Path, max_len: int = 300, device: str = "cpu"):
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"text encoder directory {path} does not exist (nothing is downloaded)")
        try:
            import transformers
        except ImportError:
            raise ConfigError("the HF text encoder needs the optional extra: pip install 'videomar[hf]'") from None
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:  # LLM tokenizers often have none; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = load_text_model(transformers, path).eval().to(device)
        self.path = str(path)
        self.max_len = max_len
        self.device = device
        self.dim = int(getattr(self.model.config, "hidden_size", None) or self.model.config.d_model)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> TextBatch:
        enc = self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_len,
                             return_tensors="pt").to(self.device)
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].bool()  # [B, L]
        mask[:, 0] = True  # an all-padding row would make attention undefined
        return TextBatch(mask=mask, embeddings=out.float())  # embeddings [B, L, dim]


def load_text_model(transformers, path: Path):
    """The model of a local folder: a T5-style encoder-decoder's encoder, else the base model."""
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    arch = (getattr(config, "architectures", None) or [""])[0]
    cls = getattr(transformers, arch) if arch.endswith("EncoderModel") and hasattr(transformers, arch) else None
    model = (cls or transformers.AutoModel).from_pretrained(path, local_files_only=True)
    return model.get_encoder() if getattr(config, "is_encoder_decoder", False) else model


def folder_id(path: str | Path) -> str:
    """A content hash of a model folder (every file's name and bytes, hidden files left out):
    equal ids, equal encoders."""
    h = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(file.relative_to(root)).encode() + b"\0")
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def with_null(mask: torch.Tensor, drop: torch.Tensor, n: int) -> torch.Tensor:
    """The mask [B, L] with rows where ``drop`` [B] is true replaced by the null text's: its
    first ``n`` positions (the learned null sequence's length)."""
    null = torch.zeros_like(mask)
    null[:, :n] = True
    return torch.where(drop[:, None], null, mask)


def pad_embeddings(rows: list[torch.Tensor]) -> TextBatch:
    """Per-caption embeddings [tokens_i, dim] -> a TextBatch padded on the right to the longest."""
    length = max(r.shape[0] for r in rows)
    emb = torch.zeros(len(rows), length, rows[0].shape[1])
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        emb[i, : r.shape[0]] = r
        mask[i, : max(r.shape[0], 1)] = True
    return TextBatch(mask=mask, embeddings=emb)


class EmbeddingTable:
    """Precomputed caption embeddings (caption -> [tokens, dim]): training and evaluation read
    them from the dataset; a caption that is not there is an error naming it."""

    def __init__(self, embeddings: dict, where: str):
        self.rows = {c: torch.as_tensor(e, dtype=torch.float32) for c, e in embeddings.items()}
        self.where = where

    def __call__(self, captions: list[str]) -> TextBatch:
        missing = [c for c in captions if c not in self.rows]
        if missing:
            raise ConfigError(f"caption {missing[0]!r} has no precomputed embedding in {self.where}; precompute "
                              f"the dataset with its text_encoder")
        return pad_embeddings([self.rows[c] for c in captions])


class CachedTextEncoder:
    """An HFTextEncoder with a cache of the embeddings of recent prompts (least recently used
    dropped first): what serving and generation embed request prompts with."""

    def __init__(self, encoder: HFTextEncoder, size: int = 1024):
        self.encoder, self.size = encoder, size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.calls = 0  # encoder calls made (tests and benchmarks read it)

    def __call__(self, captions: list[str]) -> TextBatch:
        todo = sorted({c for c in captions if c not in self.cache})
        if todo:
            self.calls += 1
            text = self.encoder.encode(todo)
            for i, c in enumerate(todo):
                self.cache[c] = text.embeddings[i, : int(text.mask[i].sum())].cpu()
        rows = []
        for c in captions:
            self.cache.move_to_end(c)
            rows.append(self.cache[c])
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return pad_embeddings(rows)


def check_text(text: TextBatch, batch: int, encoder: str) -> None:
    if len(text) != batch:
        raise ConfigError(f"text batch has {len(text)} rows but latents have {batch}")
    if encoder == "bytes" and text.tokens is None:
        raise ConfigError("model.text_encoder='bytes' needs TextBatch.tokens (use model.tokenize)")
    if encoder == "precomputed" and text.embeddings is None:
        raise ConfigError("model.text_encoder='precomputed' needs TextBatch.embeddings")


