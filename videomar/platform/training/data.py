"""The worker's side of the latent dataset: an endless, resumable stream of batches, and a fresh
latent sample per step from the stored posterior moments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass
class Batch:
    mean: torch.Tensor  # [B, C, T', H', W']
    logvar: torch.Tensor  # [B, C, T', H', W']
    captions: list[str]


def collate(columns: dict[str, np.ndarray]) -> Batch:
    """Ray Data numpy columns -> a Batch (captions stay strings: they are tokenized by the model)."""
    return Batch(
        mean=torch.as_tensor(np.ascontiguousarray(columns["mean"]), dtype=torch.float32),
        logvar=torch.as_tensor(np.ascontiguousarray(columns["logvar"]), dtype=torch.float32),
        captions=[str(c) for c in columns["caption"]],
    )


def _collate_fn():
    """``collate`` in the form Ray Data's iter_torch_batches takes (a NumpyBatchCollateFn)."""
    from ray.data.collate_fn import NumpyBatchCollateFn

    class Collate(NumpyBatchCollateFn):
        def __call__(self, batch: dict[str, np.ndarray]) -> Batch:
            return collate(batch)

    return Collate()


def stream(shard, batch_size: int, epoch: int, skip: int) -> Iterator[tuple[int, int, Batch]]:
    """(epoch, index in epoch, batch) forever, starting at ``epoch`` after ``skip`` batches.

    Every rank's shard holds the same number of rows (Ray Train splits datasets equally) and the
    last partial batch is dropped, so all ranks step in lockstep across epoch boundaries.
    """
    collate_fn = _collate_fn()
    while True:
        index = 0
        for batch in shard.iter_torch_batches(batch_size=batch_size, drop_last=True, collate_fn=collate_fn):
            if index >= skip:
                yield epoch, index, batch
            index += 1
        if index == 0:
            raise RuntimeError(
                f"this worker's data shard has fewer than optim.batch_size={batch_size} clips; "
                f"lower optim.batch_size or scaling.workers, or add clips to the bucket"
            )
        epoch, skip = epoch + 1, 0


def draw_latents(batch: Batch, scale: float, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """A fresh posterior sample mean + std * eps, times the VAE's latent scale: [B, C, T', H', W']."""
    mean = batch.mean.to(device, non_blocking=True)
    logvar = batch.logvar.to(device, non_blocking=True)
    eps = torch.randn(mean.shape, generator=generator, device=device, dtype=mean.dtype)
    return (mean + torch.exp(0.5 * logvar) * eps) * scale
