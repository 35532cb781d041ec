"""VideoMAR: a decoder-only transformer over continuous latent tokens with a block-causal mask
(bidirectional inside a frame, causal across frames), 3D RoPE, cross-attention to text, and a
per-token diffusion head trained with the next-frame masked objective."""

from __future__ import annotations

import torch
from torch import nn

from videomar.errors import ConfigError
from videomar.model.attention import block_causal_mask
from videomar.model.blocks import Block
from videomar.model.cache import CachePolicy, KVCache
from videomar.model.config import ModelConfig
from videomar.model.diffloss import DiffusionHead
from videomar.model.masking import sample_target_frames, sample_token_mask
from videomar.model.rope import Rope3D
from videomar.model.text import BytesTextEncoder, TextBatch, check_text, tokenize_bytes, with_null
from videomar.model.tokens import grid_positions, patchify


class TextContext:
    """Encoded text for one forward or one whole generation: embeddings [B, L, text_dim], mask
    [B, L], and each layer's cross-attention keys/values, computed on first use."""

    def __init__(self, embeddings: torch.Tensor, mask: torch.Tensor):
        self.embeddings = embeddings
        self.mask = mask
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def kv(self, layer: int, block: Block):
        if layer not in self._kv:
            self._kv[layer] = block.cross.text_kv(self.embeddings)
        return self._kv[layer]


class VideoMAR(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        d = config.width
        self.z_proj = nn.Linear(config.token_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        k = config.motion_hint
        self.hint_proj = nn.Linear(2 * k * k * config.token_dim, d) if k else None
        self.text_encoder = BytesTextEncoder(config.text_dim, config.text_max_len) if config.text_encoder == "bytes" else None
        # Classifier-free guidance's unconditional text: a learned sequence (as in the paper) for
        # precomputed embeddings, one learned token for the bytes encoder.
        null_len = config.text_max_len if config.text_encoder == "precomputed" else 1
        self.null_text = nn.Parameter(torch.zeros(null_len, config.text_dim))
        self.text_source = None  # captions -> TextBatch of embeddings (use_text_source); not weights
        self.rope = Rope3D(config.rope_slices, config.rope_theta)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.head = DiffusionHead(config.token_dim, d, config.head)
        self.initialize_weights()

    # -- weights ---------------------------------------------------------------------------
    def initialize_weights(self) -> None:
        """All weight init in one place: xavier linears, small normal embeddings, zero-init head outputs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for p in (self.mask_token, self.null_text):
            nn.init.normal_(p, std=0.02)
        if self.text_encoder is not None:
            nn.init.normal_(self.text_encoder.pos, std=0.02)
        self.head.net.zero_init()

    # -- text ------------------------------------------------------------------------------
    def use_text_source(self, source) -> "VideoMAR":
        """Where ``tokenize`` gets precomputed embeddings: a callable captions -> TextBatch (the
        dataset's EmbeddingTable in training and evaluation, a CachedTextEncoder in serving)."""
        self.text_source = source
        return self

    def tokenize(self, captions: list[str]) -> TextBatch:
        """Captions -> the model's TextBatch (on CPU; move it with .to(device)): byte ids for the
        bytes encoder, else embeddings from the attached text source."""
        if self.config.text_encoder == "bytes":
            return tokenize_bytes(list(captions), self.config.text_max_len)
        if self.text_source is None:
            raise ConfigError("model.text_encoder='precomputed': no text source attached (use_text_source)")
        return self.text_source(list(captions))

    def encode_text(self, text: TextBatch, drop: torch.Tensor | None = None) -> TextContext:
        """Text embeddings, with rows where `drop` [B] is true replaced by the learned null text."""
        emb = self.text_encoder(text.tokens) if self.text_encoder is not None else text.embeddings
        emb = emb.to(self.null_text.dtype)
        if drop is None:
            return TextContext(emb, text.mask)
        n, mask = self.null_text.shape[0], text.mask
        if emb.shape[1] < n:  # room for the whole null sequence: pad (masked out) on the right
            emb = nn.functional.pad(emb, (0, 0, 0, n - emb.shape[1]))
            mask = nn.functional.pad(mask, (0, n - mask.shape[1]), value=False)
        null = torch.zeros_like(emb)
        null[:, :n] = self.null_text
        emb = torch.where(drop[:, None, None], null, emb)
        return TextContext(emb, with_null(mask, drop, n))

    # -- backbone --------------------------------------------------------------------------
    def backbone(self, h, pos, text: TextContext, cache: KVCache | None = None, write: bool = False):
        """h [B, S, D] token embeddings at integer positions pos [S, 3] (t, y, x) -> z [B, S, D].

        With a cache, tokens also attend to every cached token (the retained finished frames, at
        the cache's re-based positions: pos's t must continue from cache.next_position); with
        write=True their keys/values are written to it (the policy may evict older frames).
        """
        cos, sin = self.rope(pos)
        past = cache.length if cache is not None else 0
        mask = block_causal_mask(pos[:, 0], past)
        if write:
            cache.begin(pos)
        for i, block in enumerate(self.blocks):
            prior = cache.get(i) if cache is not None else None
            h, (k, v) = block(h, cos, sin, mask, prior, text.kv(i, block), text.mask)
            if write:
                cache.write(i, k, v)
        if write:
            cache.end()
        return self.norm(h)

    def new_cache(self, policy: CachePolicy | None = None, capacity: int = 0) -> KVCache:
        """An empty temporal KV cache for this model; ``capacity`` frames are allocated at the
        first write (a full cache doubles when it outgrows them)."""
        return KVCache(self.config.depth, policy, self.rope, capacity)

    def embed_tokens(self, tokens: torch.Tensor, masked: torch.Tensor | None = None,
                     hint: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [B, S, c] -> [B, S, D]; positions where masked [B, S] is true become mask_token
        (plus hint [B, S, D], the frame_hint, when the model has one)."""
        h = self.z_proj(tokens)
        if masked is None:
            return h
        empty = self.mask_token.to(h.dtype)
        if hint is not None:
            empty = empty + hint
        return torch.where(masked[..., None], empty, h)

    def frame_hint(self, last: torch.Tensor, before: torch.Tensor, known: torch.Tensor,
                   grid: tuple[int, int]) -> torch.Tensor | None:
        """What the masked tokens of the next frame see (model.motion_hint): each token's k x k
        neighbourhood of the last frame and of the last change. last, before [B, N, c]: the
        two frames before it; known [B]: how many frames precede it (a missing frame is zeros,
        a missing change is zero). -> [B, N, D], or None without a hint."""
        k = self.config.motion_hint
        if not k:
            return None
        one = (known >= 1).to(last.dtype)[:, None, None]
        two = (known >= 2).to(last.dtype)[:, None, None]
        x = torch.cat([one * last, two * (last - before)], dim=-1)  # [B, N, 2c]
        b, n, c2 = x.shape
        x = x.transpose(1, 2).reshape(b, c2, *grid)
        x = nn.functional.unfold(x, k, padding=k // 2)  # [B, 2c*k*k, N], zeros beyond the edges
        return self.hint_proj(x.transpose(1, 2))

    # -- training objective ----------------------------------------------------------------
    def _prepare(self, latents, text, generator, target_frames):
        cfg = self.config
        if latents.ndim != 5 or latents.shape[1] != cfg.latent_channels:
            raise ConfigError(
                f"latents must be [B, {cfg.latent_channels}, T, H, W] (model.latent_channels="
                f"{cfg.latent_channels}), got {tuple(latents.shape)}"
            )
        check_text(text, latents.shape[0], cfg.text_encoder)
        x = patchify(latents, cfg.patch_size)  # [B, T, N, c]
        b, t, n, _ = x.shape
        k = target_frames if target_frames is not None else sample_target_frames(b, t, x.device, generator)
        k = k.to(device=x.device, dtype=torch.long)
        if bool((k < 0).any()) or bool((k >= t).any()):
            raise ConfigError(f"target_frames must lie in [0, {t - 1}], got {k.tolist()}")
        return x, k

    def _target_outputs(self, latents, text, generator=None, target_frames=None):
        """Run the objective's forward: (z of frame k [B, N, D], target tokens [B, N, c], mask [B, N])."""
        cfg = self.config
        x, k = self._prepare(latents, text, generator, target_frames)
        b, t, n, c = x.shape
        f = int(k.max()) + 1  # frames after the latest target cannot influence it: drop them
        x = x[:, :f]
        token_mask = sample_token_mask(b, n, cfg.mask_ratio_min, cfg.mask_ratio_std, x.device, generator)
        frame = torch.arange(f, device=x.device)
        # Frame k is masked MAR-style; frames after k (other samples' context) are fully masked.
        masked = ((frame[None, :] == k[:, None])[:, :, None] & token_mask[:, None, :]) | (frame[None, :] > k[:, None])[:, :, None]
        rows = torch.arange(b, device=x.device)
        last, before = x[rows, (k - 1).clamp(min=0)], x[rows, (k - 2).clamp(min=0)]  # [B, N, c] each
        hint = self.frame_hint(last, before, k, _grid(latents, cfg.patch_size))  # [B, N, D] for frame k
        if hint is not None:  # frames after k (fully masked) see no hint: no sample attends to them
            hint = torch.zeros(b, f, n, hint.shape[-1], device=x.device, dtype=hint.dtype).index_put(
                (rows, k), hint).reshape(b, f * n, -1)
        h = self.embed_tokens(x.reshape(b, f * n, c), masked.reshape(b, f * n), hint)  # [B, F*N, D]
        drop = None
        if self.training and cfg.text_drop_prob > 0:
            drop = torch.rand(b, device=x.device, generator=generator) < cfg.text_drop_prob
        ctx = self.encode_text(text.to(x.device), drop)
        pos = grid_positions(0, f, _grid(latents, cfg.patch_size), x.device)
        z = self.backbone(h, pos, ctx).view(b, f, n, -1)
        target = x[rows, k]  # [B, N, c]
        if cfg.residual:
            target = target - residual_base(last, before, k, cfg.residual_momentum)
        return z[rows, k], target, token_mask

    def training_loss(self, latents, text: TextBatch, generator=None, target_frames=None) -> torch.Tensor:
        """The next-frame diffusion loss (scalar) on the masked tokens of each sample's frame k.

        latents [B, C, T, H, W], already multiplied by the VAE's latent scale.
        """
        z, target, mask = self._target_outputs(latents, text, generator, target_frames)
        c, d = target.shape[-1], z.shape[-1]
        return self.head.loss(target.reshape(-1, c), z.reshape(-1, d), mask.reshape(-1), generator)

    def loss_per_sample(self, latents, text: TextBatch, generator=None, target_frames=None) -> torch.Tensor:
        """As training_loss, but one mean per sample: [B]."""
        z, target, mask = self._target_outputs(latents, text, generator, target_frames)
        b, n, c = target.shape
        per_token = self.head.token_losses(target.reshape(-1, c), z.reshape(b * n, -1), generator)
        per_token = per_token.view(-1, b, n)  # [mul, B, N]
        w = mask.to(per_token.dtype)[None].expand_as(per_token)
        return (per_token * w).sum(dim=(0, 2)) / w.sum(dim=(0, 2)).clamp(min=1)


def residual_base(last: torch.Tensor, before: torch.Tensor, known: torch.Tensor, momentum: float) -> torch.Tensor:
    """What a residual model's frame is a change from: ``last + momentum * (last - before)``
    where two frames precede it, ``last`` where one does, zeros where none does.

    last, before [B, N, c]: the two frames before it; known [B]: how many frames precede it.
    """
    one = (known >= 1)[:, None, None].to(last.dtype)
    two = (known >= 2)[:, None, None].to(last.dtype)
    return one * last + two * momentum * (last - before)


def _grid(latents: torch.Tensor, patch_size: int) -> tuple[int, int]:
    return latents.shape[-2] // patch_size, latents.shape[-1] // patch_size


def build_model(config: ModelConfig) -> VideoMAR:
    return VideoMAR(config)


def count_parameters(config: ModelConfig) -> int:
    """Parameters of a model built from config, without allocating them (meta device)."""
    with torch.device("meta"):
        model = VideoMAR(config)
    return sum(p.numel() for p in model.parameters())
