"""The model FLOPs of one VideoMAR training step, and the GPU peaks they are divided by (MFU).

Counted by hand from the architecture (videomar/model), matrix multiplications only, two FLOPs
per multiply-add: norms, RoPE, activations and the loss are left out, as in the usual MFU
convention (PaLM, Megatron, torchtitan). Attention counts the scores and the weighted sum that
the block-causal mask needs, not the masked-out part a dense kernel may also compute: a query of
frame i sees the (i + 1) * N tokens of frames 0..i. A training step is three forward passes
(the backward pass costs two). tests/unit/test_bench_gpu.py checks the forward count against
torch's FlopCounterMode on a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass

from videomar.model.config import ModelConfig

TIME_FEATURES = 256  # videomar.model.diffloss.TIME_FREQ_DIM: the head's timestep MLP input

# Dense bf16 tensor-core peaks (no sparsity) from NVIDIA's datasheets, FLOP/s, matched in order
# against torch.cuda.get_device_name(): the first name it contains wins.
BF16_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),  # SXM; the NVL part is 835.5e12 and also reports "H200 NVL"
    ("H100 PCIe", 756.0e12),
    ("H100 NVL", 835.5e12),
    ("H100", 989.4e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H800", 989.4e12),
    ("A100", 312.0e12),
    ("A800", 312.0e12),
    ("L40S", 362.05e12),
    ("A10G", 70.0e12),
    ("L4", 121.0e12),
)


@dataclass(frozen=True)
class StepShape:
    """What one training step runs through the model."""

    batch: int  # clips in the step
    frames: int  # latent frames the backbone runs: the target frame and every frame before it
    tokens_per_frame: int  # N = (H' / p) * (W' / p)
    text_len: int  # text tokens per clip (the batch's padded caption length)


def backbone_forward_flops(cfg: ModelConfig, frames: int, tokens_per_frame: int, text_len: int) -> int:
    """One clip's forward pass through z_proj and the transformer blocks."""
    d, n, f = cfg.width, tokens_per_frame, frames
    s = f * n  # tokens in the sequence
    hidden = int(d * cfg.mlp_ratio)
    linear = (2 * s * d * 3 * d  # self-attention qkv
              + 2 * s * d * d  # self-attention output
              + 2 * s * d * d  # cross-attention q
              + 2 * text_len * cfg.text_dim * 2 * d  # cross-attention k, v of the text
              + 2 * s * d * d  # cross-attention output
              + 2 * 2 * s * d * hidden)  # MLP
    visible = n * n * f * (f + 1) // 2  # (query, key) pairs the block-causal mask lets through
    attention = 4 * d * visible + 4 * s * text_len * d  # q.k and p.v: self, then cross
    return 2 * s * cfg.token_dim * d + cfg.depth * (linear + attention)


def head_forward_flops(cfg: ModelConfig, tokens: int) -> int:
    """The diffusion head's forward pass on ``tokens`` (token, timestep) pairs."""
    w, c, h = cfg.head.width, cfg.token_dim, cfg.head
    per_token = 2 * (c * w  # input projection
                     + TIME_FEATURES * w + w * w  # timestep MLP
                     + cfg.width * w  # condition projection
                     + h.depth * (2 * w * w + 3 * w * w)  # residual blocks: MLP and adaLN
                     + 2 * w * w  # final adaLN
                     + 2 * c * w)  # output: epsilon and the variance value
    return tokens * per_token


def forward_flops(cfg: ModelConfig, shape: StepShape) -> int:
    """The training objective's forward pass over the step's clips. The head runs on every token
    of each clip's target frame, ``batch_mul`` timesteps each (the mask only weights the loss)."""
    backbone = backbone_forward_flops(cfg, shape.frames, shape.tokens_per_frame, shape.text_len)
    head = head_forward_flops(cfg, shape.tokens_per_frame * cfg.head.batch_mul)
    return shape.batch * (backbone + head)


def train_step_flops(cfg: ModelConfig, shape: StepShape) -> int:
    """Forward and backward: three forward passes."""
    return 3 * forward_flops(cfg, shape)


def bf16_peak(device_name: str) -> float | None:
    """The GPU's dense bf16 peak in FLOP/s, or None for a GPU not in BF16_PEAKS."""
    for key, peak in BF16_PEAKS:
        if key in device_name:
            return peak
    return None


def mfu(flops_per_step: int, step_time_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    if peak is None or step_time_s <= 0:
        return None
    return flops_per_step / step_time_s / peak
