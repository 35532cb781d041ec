"""The DeepSpeed config of a stage: ZeRO stage, precision, batch arithmetic and clipping.

The optimizer is a torch AdamW built by the loop and handed to DeepSpeed (so no fused kernel has
to compile on CPU); the lr schedule is a torch LambdaLR on it, stepped by DeepSpeed at each
accumulation boundary.
"""

from __future__ import annotations

from typing import Any

from videomar.platform.specs.train import TrainSpec

# Log-free: DeepSpeed's own step printing would interleave with ours.
_QUIET_STEPS = 1 << 30


def resolve_precision(precision: str, cuda: bool) -> str:
    """``auto`` means bf16 on CUDA and fp32 on CPU; bf16 without CUDA is refused."""
    if precision == "auto":
        return "bf16" if cuda else "fp32"
    if precision == "bf16" and not cuda:
        raise ValueError("deepspeed.precision=bf16 needs GPU workers (resources.gpus_per_worker > 0); use auto")
    return precision


def build_ds_config(spec: TrainSpec, precision: str) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": spec.deepspeed.zero_stage}
    if spec.deepspeed.zero_stage == 3:
        # Parameters are gathered module by module; keep the whole tiny-to-large range workable.
        zero.update({"stage3_param_persistence_threshold": 0, "stage3_gather_16bit_weights_on_model_save": False})
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": spec.optim.batch_size,
        "gradient_accumulation_steps": spec.optim.grad_accum,
        "train_batch_size": spec.global_batch,
        "gradient_clipping": spec.optim.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": precision == "bf16"},
        # The engine's forward switches off an autocast entered around it (as the loop does) unless
        # this section enables its own: the bf16 module would then meet fp32 latents and buffers.
        "torch_autocast": {"enabled": precision == "bf16", "dtype": "bfloat16"},
        "fp16": {"enabled": False},
        "steps_per_print": _QUIET_STEPS,
        "wall_clock_breakdown": False,
    }
    return config
