"""Model configuration: one typed config, named size presets in one registry, validation whose
messages name the field at fault."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from videomar.errors import ConfigError

# What the network predicts: MAR's epsilon, or v = sqrt(alpha_bar) * eps - sqrt(1 - alpha_bar) * x0
# (progressive distillation's), whose x0 = sqrt(alpha_bar) * x_t - sqrt(1 - alpha_bar) * v is
# well-conditioned at every step and whose loss weighs x0's error by 1 at high noise, where the
# head learns the condition's mean (epsilon's loss weighs it by alpha_bar / (1 - alpha_bar) ~ 0).
PREDICTIONS = ("epsilon", "v")
LATENT_CLIP = 2.0  # generated latents' bound when the model's config does not say its data's range


@dataclass(frozen=True)
class HeadConfig:
    """The per-token diffusion head (MAR's adaLN residual MLP) and its DDPM."""

    width: int = 1024
    depth: int = 3
    train_steps: int = 1000  # DDPM steps in training (cosine schedule)
    sample_steps: int = 100  # respaced steps when sampling
    batch_mul: int = 4  # timesteps drawn per token per training step
    # Sampling keeps each step's predicted x0 within [-x0_clip, x0_clip], the data's range: at the
    # first respaced step 1/sqrt(alpha_bar) is ~2e4, so an imperfect head's epsilon error becomes
    # an x0 error in the thousands and the chain explodes. None samples unclipped, as MAR does.
    # Training stages set it from the dataset's latent statistics (training/config.py).
    x0_clip: float | None = None
    # "epsilon" (MAR's) or "v": see PREDICTIONS for why v suits heads early in training.
    prediction: str = "epsilon"


@dataclass(frozen=True)
class ModelConfig:
    """VideoMAR: a decoder-only transformer over latent tokens with a per-token diffusion head.

    Fields are named as job specs name them (``model.overrides``), so validation messages can
    point at ``model.<field>``.
    """

    width: int = 1536  # D
    depth: int = 36
    heads: int = 24
    mlp_ratio: float = 4.0
    latent_channels: int = 16  # C of the VAE whose latents we model
    patch_size: int = 1  # p: p*p latent pixels fold into one token
    rope_theta: float = 10000.0
    # Channels of each head given to the (t, h, w) rotary slices; t gets the larger share.
    rope_split: tuple[int, int, int] | None = None
    text_encoder: str = "bytes"  # "bytes" (learned, in the model) or "precomputed" (embeddings given)
    text_dim: int = 1536
    text_max_len: int = 300
    text_drop_prob: float = 0.1  # classifier-free guidance: P(text -> learned null embedding)
    mask_ratio_min: float = 0.7
    mask_ratio_std: float = 0.25  # truncated normal on [mask_ratio_min, 1] with mean 1
    # The head's target is each token's change from the same token of the previous frame (frame
    # 0: the token itself), and sampling adds the change back. A model short of training then
    # errs towards the previous frame rather than towards noise; the paper predicts tokens as
    # they are (false).
    residual: bool = False
    # With residual, the change is taken from the last frame moved on by this fraction of the
    # last frame-to-frame change (x[k-1] + m (x[k-1] - x[k-2])): at 0.5, a model that predicts
    # no change continues the motion it has seen, damped, instead of freezing it.
    residual_momentum: float = 0.0
    # The masked tokens of the frame being generated also see the k x k neighbourhood of their
    # position in the last frame and in the last frame-to-frame change (k = motion_hint, odd; 0:
    # the mask token alone, as the paper). A token's next value is then a local function of what
    # it sees, where with the mask token alone it must first learn where to attend.
    motion_hint: int = 0
    # Generated frames (after the first) are kept within [-latent_clip, latent_clip], the data's
    # range: a frame drifting out of it feeds the next one. Training stages set it from the
    # dataset's latent statistics; None keeps LATENT_CLIP.
    latent_clip: float | None = None
    head: HeadConfig = field(default_factory=HeadConfig)

    @property
    def frame_clip(self) -> float:
        """The bound generated frames are kept within."""
        return self.latent_clip if self.latent_clip is not None else LATENT_CLIP

    @property
    def target_span(self) -> float:
        """How many times the data's range the head's targets span: a residual target is a
        difference of 2 + 2 m latents' worth."""
        return 2.0 + 2.0 * self.residual_momentum if self.residual else 1.0

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def token_dim(self) -> int:
        """Channels of one token: C * p * p."""
        return self.latent_channels * self.patch_size**2

    @property
    def rope_slices(self) -> tuple[int, int, int]:
        if self.rope_split is not None:
            return tuple(self.rope_split)  # type: ignore[return-value]
        quarter = self.head_dim // 4
        return (self.head_dim - 2 * quarter, quarter, quarter)

    def validate(self) -> "ModelConfig":
        positive = ["width", "depth", "heads", "latent_channels", "patch_size", "text_dim", "text_max_len"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be >= 1")
        if self.width % self.heads:
            raise ConfigError(
                f"model.heads={self.heads} does not divide model.width={self.width}; "
                f"choose heads so that width/heads is an integer"
            )
        if self.head_dim % 4:
            raise ConfigError(f"model.width/model.heads={self.head_dim} must be a multiple of 4 for 3D RoPE")
        t, h, w = self.rope_slices
        if t + h + w != self.head_dim or min(t, h, w) < 2 or any(s % 2 for s in (t, h, w)):
            raise ConfigError(
                f"model.rope_split={self.rope_slices} must be three even, positive numbers summing "
                f"to the head dimension {self.head_dim}"
            )
        if self.text_encoder not in ("bytes", "precomputed"):
            raise ConfigError(f"model.text_encoder={self.text_encoder!r}: expected 'bytes' or 'precomputed'")
        if not 0.0 <= self.text_drop_prob < 1.0:
            raise ConfigError(f"model.text_drop_prob={self.text_drop_prob} must be in [0, 1)")
        if not 0.0 < self.mask_ratio_min <= 1.0:
            raise ConfigError(f"model.mask_ratio_min={self.mask_ratio_min} must be in (0, 1]")
        if self.mask_ratio_std <= 0:
            raise ConfigError(f"model.mask_ratio_std={self.mask_ratio_std} must be > 0")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"model.mlp_ratio={self.mlp_ratio} must be > 0")
        hd = self.head
        for name in ("width", "depth", "train_steps", "sample_steps", "batch_mul"):
            if getattr(hd, name) < 1:
                raise ConfigError(f"model.head.{name}={getattr(hd, name)} must be >= 1")
        if not 0.0 <= self.residual_momentum <= 1.0:
            raise ConfigError(f"model.residual_momentum={self.residual_momentum} must be in [0, 1]")
        if self.residual_momentum and not self.residual:
            raise ConfigError(f"model.residual_momentum={self.residual_momentum} needs model.residual: true")
        if self.motion_hint < 0 or (self.motion_hint and self.motion_hint % 2 == 0):
            raise ConfigError(f"model.motion_hint={self.motion_hint} must be 0 or an odd neighbourhood side (1, 3, 5, ...)")
        if self.latent_clip is not None and not self.latent_clip > 0:
            raise ConfigError(f"model.latent_clip={self.latent_clip} must be > 0, or null for {LATENT_CLIP}")
        if hd.x0_clip is not None and not hd.x0_clip > 0:
            raise ConfigError(f"model.head.x0_clip={hd.x0_clip} must be > 0, or null to sample unclipped")
        if hd.prediction not in PREDICTIONS:
            raise ConfigError(f"model.head.prediction={hd.prediction!r} is unknown; expected one of {', '.join(PREDICTIONS)}")
        if hd.sample_steps > hd.train_steps:
            raise ConfigError(
                f"model.head.sample_steps={hd.sample_steps} cannot exceed model.head.train_steps={hd.train_steps}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _build(cls(), data, "model").validate()


PRESETS: dict[str, ModelConfig] = {
    # ~1M parameters: CPU tests and the quickstart.
    "tiny": ModelConfig(width=96, depth=4, heads=4, text_dim=96, text_max_len=64,
                        head=HeadConfig(width=128, depth=3)),
    "small": ModelConfig(width=384, depth=12, heads=6, text_dim=384, text_max_len=128,
                         head=HeadConfig(width=512, depth=3)),
    "base": ModelConfig(width=768, depth=24, heads=12, text_dim=768, text_max_len=300,
                        head=HeadConfig(width=768, depth=3)),
    # The paper's size: D=1536, depth 36, 24 heads of 64 channels, ~1.4B parameters.
    "large": ModelConfig(width=1536, depth=36, heads=24, text_dim=1536, text_max_len=300,
                         head=HeadConfig(width=1024, depth=3)),
}


def model_config(preset: str, **overrides: Any) -> ModelConfig:
    """A preset with overrides applied (``head`` may be a partial dict), validated."""
    if preset not in PRESETS:
        raise ConfigError(f"model.preset={preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    return _build(PRESETS[preset], overrides, "model").validate()


def _build(base: ModelConfig, overrides: dict[str, Any], prefix: str) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"{prefix}.{key}: unknown field; known fields: {', '.join(sorted(names))}")
        if key == "head":
            changes[key] = _build_head(base.head, value, f"{prefix}.head")
        elif key == "rope_split" and value is not None:
            changes[key] = tuple(int(v) for v in value)
        else:
            changes[key] = _coerce(value, type(getattr(base, key)), f"{prefix}.{key}")
    return dataclasses.replace(base, **changes)


def _build_head(base: HeadConfig, value: Any, prefix: str) -> HeadConfig:
    if isinstance(value, HeadConfig):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}: expected a mapping of head fields, got {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(HeadConfig)}
    for key in value:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}: unknown field; known fields: {', '.join(sorted(names))}")
    kinds = {name: {"x0_clip": float, "prediction": str}.get(name, int) for name in names}
    return dataclasses.replace(base, **{k: _coerce(v, kinds[k], f"{prefix}.{k}") for k, v in value.items()})


def _coerce(value: Any, kind: type, name: str) -> Any:
    if kind is type(None) or value is None:
        return value
    if kind is bool or isinstance(value, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: expected true or false")
        return value
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected {kind.__name__}") from None
    if kind is int and out != value:
        raise ConfigError(f"{name}={value!r}: expected a whole number")
    return out
