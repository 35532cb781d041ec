"""VAE encoding of decoded clips: the VAE loaded from its export directory (local or s3://), and
the callable class Ray Data runs in an actor pool (one VAE per actor, on its GPU when it has one).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict

import numpy as np

from videomar.artifacts import storage
from videomar.data_pipelines.clips import to_model_pixels
from videomar.model.vae import load_vae

# Rows that carry a clip to encode; other rows (skipped clips, errors) pass through untouched.
CLIP = "clip"


def load_vae_from(uri: str):
    """A VideoVAE from an export directory, downloading it first when it lives in S3."""
    if not storage.is_s3(uri):
        return load_vae(uri)
    with tempfile.TemporaryDirectory(prefix="videomar-vae-") as tmp:
        storage.copy_tree(uri, tmp)
        return load_vae(tmp)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def clip_pixels(batch: dict[str, np.ndarray], rows: list[int]) -> np.ndarray:
    """The uint8 clips of ``rows`` (all of one bucket) as float32 [B, 3, T, H, W] in [-1, 1]."""
    shape = (int(batch["frames"][rows[0]]), int(batch["height"][rows[0]]), int(batch["width"][rows[0]]), 3)
    return np.stack([to_model_pixels(np.frombuffer(batch["pixels"][i], np.uint8).reshape(shape)) for i in rows])


class ClipEncoder:
    """Ray Data callable: pixels -> posterior moments (float32 bytes of [C, T', H', W']) per clip row.

    Clips of different buckets may share a batch; each bucket is encoded as its own sub-batch.
    """

    def __init__(self, vae_uri: str, threads: int | None = None):
        import torch

        # Ray leaves OMP_NUM_THREADS unset for a fractional CPU reservation, and torch would then
        # start one spinning thread per core in every actor, fighting the decoders for the CPUs.
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = pick_device()
        self.vae = load_vae_from(vae_uri).to(self.device).eval()
        self.torch = torch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["status"])
        mean_out = np.empty(n, dtype=object)
        logvar_out = np.empty(n, dtype=object)
        mean_out[:] = b""
        logvar_out[:] = b""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i in range(n):
            if batch["status"][i] == CLIP:
                groups[(int(batch["frames"][i]), int(batch["height"][i]), int(batch["width"][i]))].append(i)
        for rows in groups.values():
            mean, logvar = self.encode(clip_pixels(batch, rows))
            for j, i in enumerate(rows):
                mean_out[i] = mean[j].tobytes()
                logvar_out[i] = logvar[j].tobytes()
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["mean"], out["logvar"] = mean_out, logvar_out
        return out

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [B, 3, T, H, W] -> (mean, logvar) float32 [B, C, T', H', W'] on the CPU."""
        with self.torch.no_grad():
            x = self.torch.from_numpy(pixels).to(self.device)
            mean, logvar = self.vae.encode(x)
        return mean.float().cpu().numpy(), logvar.float().cpu().numpy()
