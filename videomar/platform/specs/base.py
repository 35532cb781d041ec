"""The base of every job spec, and the sections several kinds share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class Section(BaseModel):
    """A spec section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class JobSpec(Section):
    """Every job spec has a ``kind`` and an optional ``name``; subclasses add their sections.
    What a spec runs lives in its kind's module under videomar/platform/jobs/."""

    kind: str
    name: str | None = Field(default=None, description="A name for runs, exports and MLflow")
    _source: str = PrivateAttr(default="<spec>")

    def with_source(self, source: str) -> "JobSpec":
        self._source = source
        return self

    @property
    def source(self) -> str:
        return self._source

    def min_cluster_cpus(self) -> float:
        """CPUs a local cluster started for this job must have (0: the machine's cores do)."""
        return 0


class ModelSection(Section):
    """A named model preset plus overrides of its fields (see videomar.model.config.PRESETS)."""

    preset: str = "tiny"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        from videomar.model.config import PRESETS

        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; expected one of {', '.join(PRESETS)}")
        return v

    def build(self, **extra: Any):
        """The validated ModelConfig; ConfigError names the override at fault."""
        from videomar.model.config import model_config

        return model_config(self.preset, **{**self.overrides, **extra})


class BucketSection(Section):
    """One (clip length, resolution) bucket in pixel units: the shape a curriculum stage trains on."""

    frames: int = Field(ge=1, description="pixel frames per clip (1 = images)")
    height: int = Field(ge=8)
    width: int = Field(ge=8)

    @property
    def key(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"
