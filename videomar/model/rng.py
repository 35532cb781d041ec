"""Random draws from one generator, or from one generator per batch row.

With one ``torch.Generator`` for a whole batch, what a row draws depends on the rows before it.
``RowGenerators`` gives each row its own stream: a draw whose first dimension is ``rows * k``
hands row i the i-th block of k values, taken from generator i. A row's random numbers then do
not depend on which other rows share the batch, as long as every row draws the same number of
values per call (true of the sampler: all rows decide the same number of tokens per step).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

# Seeds of distinct streams lie this far apart (seed + SEED_STRIDE * stream): a run's streams never
# meet another run's, and a resumed run draws what it would have drawn.
SEED_STRIDE = 1_000_003


class RowGenerators:
    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, fn: Callable, shape: tuple[int, ...], device, dtype) -> torch.Tensor:
        rows = len(self.generators)
        if shape[0] % rows:
            raise ValueError(f"a draw of {shape[0]} rows cannot be split over {rows} row generators")
        part = (shape[0] // rows, *shape[1:])
        return torch.cat([fn(part, generator=g, device=device, dtype=dtype) for g in self.generators])


Generator = Union[torch.Generator, RowGenerators, None]


def rand(shape: tuple[int, ...], device, generator: Generator = None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) of ``shape``."""
    if isinstance(generator, RowGenerators):
        return generator.draw(torch.rand, shape, device, dtype)
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def randn(shape: tuple[int, ...], device, generator: Generator = None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal of ``shape``."""
    if isinstance(generator, RowGenerators):
        return generator.draw(torch.randn, shape, device, dtype)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)
