"""The ``generate`` job spec: offline batch inference over a manifest of inputs with Ray Data.

The inputs manifest is JSON Lines, one object per line (see ``InputLine``): ``image`` (a PNG or
JPEG path or URI, relative paths resolved against the manifest's folder), and optionally
``prompt``, ``frames``, ``seed``, ``steps``, ``cfg``, ``temperature``, ``name``. Each input
becomes ``<output>/<name>.mp4`` (``name`` defaults to the line number, zero-padded); a
``results.json`` beside them lists every input's output or error. Frames are pixel frames of
the output video, the condition image counted as frame 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from videomar.platform.specs.base import JobSpec, Section
from videomar.platform.specs.serve import SamplerDefaults


class GenerateDefaults(SamplerDefaults):
    """Values for inputs that leave them out (steps, cfg, temperature as for serving)."""

    frames: int = Field(default=9, ge=2, description="pixel frames per video, the image included")
    seed: int = Field(default=0, ge=0)


class WorkersSection(Section):
    """The Ray Data actor pool: each actor loads the export once."""

    actors: int = Field(default=1, ge=1)
    batch_size: int = Field(default=8, ge=1, description="inputs per actor call (sampled together)")
    cpus_per_actor: float = Field(default=1, gt=0)
    gpus_per_actor: float | Literal["auto"] = Field(
        default="auto", description="auto: one GPU per actor when the cluster has GPUs, else none")


class GenerateSpec(JobSpec):
    kind: Literal["generate"] = "generate"
    checkpoint: str = Field(description="URI of a complete stage export (local path or s3://)")
    inputs: str = Field(description="URI of the inputs manifest (JSON Lines)")
    output: str = Field(description="URI of the folder the videos are written to")
    overwrite: bool = Field(default=False, description="redo inputs whose video already exists")
    defaults: GenerateDefaults = GenerateDefaults()
    workers: WorkersSection = WorkersSection()

    def run(self) -> int:
        from videomar.platform.serving.offline import run_generate

        return run_generate(self)
