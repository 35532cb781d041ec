"""Learning-rate schedule: linear warm-up, then constant or cosine decay to a floor."""

from __future__ import annotations

import math


def lr_factor(step: int, steps: int, warmup_steps: int, decay: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based) of ``steps``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    span = max(steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StageSchedule:
    """A picklable callable for torch's LambdaLR built from a spec's ``schedule`` section."""

    def __init__(self, steps: int, warmup_steps: int, decay: str, min_lr_ratio: float):
        self.steps, self.warmup_steps = steps, warmup_steps
        self.decay, self.min_lr_ratio = decay, min_lr_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.steps, self.warmup_steps, self.decay, self.min_lr_ratio)
