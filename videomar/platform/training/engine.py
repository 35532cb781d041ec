"""The DeepSpeed engine around VideoMAR's training loss: optimizer, lr schedule, ZeRO stage.

DeepSpeed drives a module's ``forward``; VideoMAR's objective is ``training_loss``, so a thin
``LossModule`` makes it the forward. Under ZeRO-3 a parameter is gathered only when the module
owning it runs ``forward``; parameters of modules used through other methods (VideoMAR's own
``mask_token`` and ``null_text``, a head used through ``loss``) are registered with the
LossModule so they are gathered around its forward.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from videomar.artifacts.checkpoint import MODEL_ATTR
from videomar.platform.training.deepspeed_config import build_ds_config
from videomar.platform.training.schedule import StageSchedule


class LossModule(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        setattr(self, MODEL_ATTR, model)

    def forward(self, latents: torch.Tensor, text, generator: torch.Generator | None = None) -> torch.Tensor:
        """latents [B, C, T', H', W'] (scaled) -> the scalar next-frame diffusion loss."""
        return getattr(self, MODEL_ATTR).training_loss(latents, text, generator=generator)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on linear weights only; biases, norms, embeddings and tokens are not decayed."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]


def register_forwardless_params(wrapper: nn.Module, model: nn.Module) -> None:
    """ZeRO-3: gather, around the wrapper's forward, parameters no module forward would gather."""
    import deepspeed

    for module in model.modules():
        if type(module).forward is nn.Module.forward:
            for param in module.parameters(recurse=False):
                deepspeed.zero.register_external_parameter(wrapper, param)


def skip_shm_comm_op() -> None:
    """Keep DeepSpeed from building its shared-memory all-reduce op when it starts.

    DeepSpeed's communication backend JIT-compiles ``deepspeed_shm_comm`` (about 25 s on two
    cores) at its first start under each Python environment, in ~/.cache/torch_extensions
    behind a lock file. A process killed while it compiles (Ctrl-C, a lost worker) leaves the
    lock, and every later start then waits on it forever. Training never uses the op: DeepSpeed
    calls it only in ``inference_all_reduce``, which falls back to torch.distributed without it,
    so it is marked unavailable (DeepSpeed keeps that dict for such edits)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def build_engine(spec, model: nn.Module, lr: float, precision: str):
    """(engine, lr scheduler): DeepSpeed with a torch AdamW (fused on CUDA) and the stage schedule."""
    import deepspeed

    skip_shm_comm_op()
    wrapper = LossModule(model)
    if spec.deepspeed.zero_stage == 3:
        register_forwardless_params(wrapper, model)
    cuda = next(model.parameters()).is_cuda
    optimizer = torch.optim.AdamW(param_groups(model, spec.optim.weight_decay), lr=lr,
                                  betas=tuple(spec.optim.betas), fused=cuda)
    sched = spec.schedule
    schedule = StageSchedule(sched.steps, sched.warmup_steps, sched.decay, sched.min_lr_ratio)
    engine, _, _, scheduler = deepspeed.initialize(
        model=wrapper,
        optimizer=optimizer,
        lr_scheduler=partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=schedule),
        config=build_ds_config(spec, precision),
        dist_init_required=False,
    )
    return engine, scheduler
