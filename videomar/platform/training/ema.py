"""Exponential moving average of the weights, in fp32, kept whole on every rank.

Under ZeRO-3 each rank holds only a slice of every parameter, so the update gathers the full
parameters first; under ZeRO 0-2 the module's parameters are already whole.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    def __init__(self, named_params: dict[str, torch.Tensor], rate: float):
        self.rate = rate
        # name -> fp32 tensor on the CPU: the EMA never competes with training for GPU memory.
        self.shadow = {k: v.detach().to("cpu", torch.float32).clone() for k, v in named_params.items()}

    @classmethod
    def from_module(cls, module: nn.Module, rate: float) -> "EMA":
        with gathered(module):
            return cls(dict(module.named_parameters()), rate)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        with gathered(module):
            for name, param in module.named_parameters():
                shadow = self.shadow[name]
                shadow.lerp_(param.detach().to("cpu", torch.float32), 1.0 - self.rate)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
        for name, value in state.items():
            self.shadow[name] = value.detach().to("cpu", torch.float32).clone()


def gathered(module: nn.Module):
    """Full parameters for reading: a ZeRO-3 gather when the module is partitioned."""
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
