"""Exponential moving average of the weights, in fp32, kept whole on every rank.

The EMA follows the exact fp32 weights the optimizer steps on. In an fp32 run those are the
module's parameters (under ZeRO-3 gathered first: each rank holds a slice). Under bf16 the module
holds DeepSpeed's bf16 copies, rounded to 8 bits of mantissa, so the EMA reads the optimizer's
fp32 master weights instead (``master_weights``).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

# A parameter -> its full fp32 master copy, or None when the optimizer keeps none.
MasterCopy = Callable[[torch.Tensor], "torch.Tensor | None"]


class EMA:
    def __init__(self, weights: Iterable[tuple[str, torch.Tensor]], rate: float):
        self.rate = rate
        # name -> fp32 tensor on the CPU: the EMA never competes with training for GPU memory.
        # Copied while iterating: a ZeRO-3 gather lasts only as long as the iteration.
        self.shadow = {k: v.detach().to("cpu", torch.float32).clone() for k, v in weights}

    @classmethod
    def from_module(cls, module: nn.Module, rate: float) -> "EMA":
        return cls(master_weights(module), rate)

    @torch.no_grad()
    def update(self, weights: Iterable[tuple[str, torch.Tensor]] | nn.Module) -> None:
        """One EMA step toward ``weights`` (name, full fp32 tensor), a module's read through
        ``master_weights``."""
        if isinstance(weights, nn.Module):
            weights = master_weights(weights)
        for name, value in weights:
            self.shadow[name].lerp_(value.detach().to("cpu", torch.float32), 1.0 - self.rate)

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


def deepspeed_master(optimizer=None) -> MasterCopy:
    """The fp32 master copy of a parameter under a DeepSpeed ``optimizer``, for every ZeRO stage.
    ZeRO 1/2 and the bf16 optimizer keep a partition of it per rank and ZeRO-3 its own partitions:
    DeepSpeed's ``safe_get_full_fp32_param`` assembles the full tensor with a collective, so every
    rank must ask for every parameter in the same order. ZeRO 0 with bf16 gradients keeps it whole,
    flattened per parameter group (``fp32_groups_flat``), where that accessor does not look."""
    from deepspeed.utils import safe_get_full_fp32_param

    flat = _flat_masters(optimizer)

    def master(param: torch.Tensor) -> torch.Tensor | None:
        value = safe_get_full_fp32_param(param)
        return value if value is not None else flat.get(id(param))

    return master


def _flat_masters(optimizer) -> dict[int, torch.Tensor]:
    """id(bf16 parameter) -> its fp32 master under DeepSpeed's FP16 optimizers (bf16 at ZeRO 0):
    the fused one keeps one flat fp32 tensor per group (``fp32_groups_flat``), the unfused one a
    list of fp32 tensors (``fp32_groups``), both in the order of ``fp16_groups``."""
    groups = getattr(optimizer, "fp16_groups", None)
    if groups is None:
        return {}
    if getattr(optimizer, "fp32_groups_flat", None) is not None:
        from torch._utils import _unflatten_dense_tensors

        masters = [_unflatten_dense_tensors(flat, group) for group, flat in zip(groups, optimizer.fp32_groups_flat)]
    else:
        masters = getattr(optimizer, "fp32_groups", None) or []
    return {id(p): v for group, values in zip(groups, masters) for p, v in zip(group, values)}


def master_weights(module: nn.Module, master: MasterCopy | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full fp32 weight) for every parameter: the parameters themselves when they are
    fp32; else (bf16 training) ``master(param)``, the optimizer's fp32 master copy (by default
    ``deepspeed_master()``)."""
    params = list(module.named_parameters())
    if all(p.dtype == torch.float32 for _, p in params):
        with gathered(module):
            yield from params
        return
    master = master or deepspeed_master()
    for name, param in params:
        value = master(param)
        if value is None:
            raise RuntimeError(f"{name}: a {param.dtype} parameter whose optimizer keeps no fp32 master copy")
        yield name, value


def gathered(module: nn.Module):
    """Full parameters for reading: a ZeRO-3 gather when the module is partitioned."""
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
