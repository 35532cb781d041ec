"""The ``generate`` job spec: offline batch inference over a manifest of inputs with Ray Data.

The inputs are either ``inputs``, the URI of a JSON Lines manifest with one object per line, or
``items``, a list of the same objects inline in the spec (see ``InputLine``): ``image`` (a PNG or
JPEG path or URI; relative paths resolve against the manifest's folder, or the working directory
for ``items``), and optionally ``prompt``, ``frames``, ``seed``, ``steps``, ``cfg``,
``temperature``, ``name``. Each input becomes ``<output>/<name>.mp4`` (``name`` defaults to its
position, zero-padded); a ``results.json`` beside them lists every input's output or error.
Frames are pixel frames of the output video, the condition image counted as frame 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from videomar.platform.specs.base import JobSpec, ResourcesSection, Section
from videomar.platform.specs.serve import SamplerDefaults

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit value
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class InputLine(Section):
    """One input: a line of the inputs manifest, or an entry of an inline ``inputs`` list."""

    image: str = Field(min_length=1, description="PNG/JPEG path or URI (relative: see inputs)")
    prompt: str = ""
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="output file stem")
    frames: int | None = Field(default=None, ge=2)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    steps: int | None = Field(default=None, ge=1)
    cfg: float | None = Field(default=None, ge=1.0)
    temperature: float | None = Field(default=None, gt=0)


class GenerateDefaults(SamplerDefaults):
    """Values for inputs that leave them out (steps, cfg, temperature as for serving)."""

    frames: int = Field(default=9, ge=2, description="pixel frames per video, the image included")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class GenerateSpec(JobSpec):
    RENAMED = {"checkpoint": "use export (the URI of a finished stage's export)",
               "workers": "use resources (workers, cpus_per_worker, gpus_per_worker) and batch_size"}

    kind: Literal["generate"] = "generate"
    export: str = Field(description="URI of a complete stage export (local path or s3://)")
    inputs: str | None = Field(default=None, description="URI of the inputs manifest (JSON Lines)")
    items: list[InputLine] | None = Field(default=None, min_length=1, description="the inputs inline, instead")
    output: str = Field(description="URI of the folder the videos are written to")
    overwrite: bool = Field(default=False, description="redo inputs whose video already exists")
    defaults: GenerateDefaults = GenerateDefaults()
    resources: ResourcesSection = Field(default_factory=ResourcesSection,
                                        description="the Ray Data actors; each loads the export once")
    batch_size: int = Field(default=8, ge=1, description="inputs per actor call (sampled together)")

    @model_validator(mode="after")
    def _one_source(self) -> "GenerateSpec":
        if (self.inputs is None) == (self.items is None):
            raise ValueError("give exactly one of inputs (a manifest URI) and items (inputs inline)")
        return self
