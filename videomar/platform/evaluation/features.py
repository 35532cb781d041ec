"""Video feature extractors for the Fréchet video distance (FVD), behind one small contract.

An extractor maps videos ``[B, 3, T, H, W]`` with pixels in ``[-1, 1]`` to features ``[B, D]``.
Two kinds exist:

- ``TorchScriptExtractor``: any TorchScript module saved to a file (local path or ``s3://``),
  e.g. a user's export of the I3D network that published FVD numbers use. Frames can be resized
  and extra keyword arguments passed to its forward, as such exports often need.
- ``BuiltinExtractor``: a fixed, untrained 3D convolution network whose weights come from a seeded
  generator, so it needs no download and gives the same features on every machine. It is only
  good for comparing runs of this platform with each other: FVD computed with it is NOT
  comparable to published FVD numbers, which use I3D trained on Kinetics-400.

``load_feature_extractor("builtin")`` or ``load_feature_extractor("/path/to/i3d.pt")`` picks one.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from videomar.artifacts import storage

BUILTIN = "builtin"


class VideoFeatureExtractor(Protocol):
    name: str

    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> [B, D] float features."""
        ...


def _resize(videos: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize every frame to ``size x size`` (time untouched): [B, 3, T, H, W] -> [B, 3, T, s, s]."""
    if size is None or videos.shape[-2:] == (size, size):
        return videos
    t = videos.shape[2]
    return F.interpolate(videos, size=(t, size, size), mode="trilinear", align_corners=False)


def _check_videos(videos: torch.Tensor) -> None:
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"videos must be [B, 3, T, H, W]; got shape {tuple(videos.shape)}")


class BuiltinExtractor(nn.Module):
    """A deterministic, untrained feature extractor for offline use (no download, no GPU).

    Two strided 3D convolutions with weights drawn from a generator seeded with ``seed``, ReLU,
    then the mean and standard deviation of each channel over time and space: ``[B, 3, T, H, W]
    -> [B, 2 * channels[-1]]``. Frames are resized to ``size`` first so every resolution gives
    features of one kind.

    Its FVD is NOT comparable to published FVD numbers (those use I3D trained on Kinetics-400);
    use it to compare checkpoints of this platform with each other, and load an I3D export with
    ``TorchScriptExtractor`` for numbers to quote.
    """

    def __init__(self, seed: int = 0, channels: tuple[int, int] = (16, 32), size: int = 64):
        super().__init__()
        self.name = f"{BUILTIN}-conv3d-seed{seed}"
        self.size = size
        gen = torch.Generator().manual_seed(seed)
        c1, c2 = channels
        self.conv1 = nn.Conv3d(3, c1, kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
        self.conv2 = nn.Conv3d(c1, c2, kernel_size=3, stride=(1, 2, 2), padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in**0.5)
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        _check_videos(videos)
        x = _resize(videos.float(), self.size)
        x = F.relu(self.conv1(x))  # [B, c1, T, s/2, s/2]
        x = F.relu(self.conv2(x))  # [B, c2, T, s/4, s/4]
        flat = x.flatten(2)
        return torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False)], dim=1)  # [B, 2*c2]


class TorchScriptExtractor:
    """A TorchScript video network loaded from a file, e.g. an I3D export for standard FVD.

    ``size`` resizes frames first (I3D expects 224); ``call_kwargs`` are passed to the module's
    forward (some exports want e.g. ``{"rescale": False, "resize": False, "return_features":
    True}``). The module must return ``[B, D]`` features for ``[B, 3, T, H, W]`` input in [-1, 1].
    """

    def __init__(self, source: str, size: int | None = None, call_kwargs: dict[str, Any] | None = None):
        try:
            blob = storage.read_bytes(source)
        except (FileNotFoundError, OSError) as err:
            raise FileNotFoundError(f"feature extractor {source}: cannot read it ({err})") from None
        try:
            self.module = torch.jit.load(io.BytesIO(blob), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(
                f"feature extractor {source}: not a TorchScript file (save one with "
                f"torch.jit.save(torch.jit.script(net), path)): {str(err).splitlines()[0]}"
            ) from None
        self.module.eval()
        self.name = f"torchscript:{source}"
        self.size = size
        self.call_kwargs = dict(call_kwargs or {})

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        _check_videos(videos)
        out = self.module(_resize(videos.float(), self.size), **self.call_kwargs)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != videos.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{self.name}: expected [B, D] features for B={videos.shape[0]}; got {shape}")
        return out.float()


def load_feature_extractor(
    source: str = BUILTIN, size: int | None = None, call_kwargs: dict[str, Any] | None = None
) -> VideoFeatureExtractor:
    """``"builtin"`` (offline, not comparable to published FVD) or a TorchScript file's path/URI."""
    if source == BUILTIN:
        return BuiltinExtractor() if size is None else BuiltinExtractor(size=size)
    return TorchScriptExtractor(source, size=size, call_kwargs=call_kwargs)


def extract_features(extractor: VideoFeatureExtractor, videos: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Features of many videos, ``batch_size`` at a time: [N, 3, T, H, W] -> [N, D]."""
    return torch.cat([extractor(videos[i : i + batch_size]) for i in range(0, videos.shape[0], batch_size)])
