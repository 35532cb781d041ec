"""The base of every job spec, and the sections several kinds share."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from videomar.artifacts.bucket import Bucket

AUTO = "auto"  # GPUs per worker: one when the cluster has GPUs, else none


class Section(BaseModel):
    """A spec section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Keys older videomar versions used here -> what replaces them; refused with that message.
    RENAMED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_old_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [key for key in cls.RENAMED if key in data]
            if old:
                raise ValueError("; ".join(f"{key} is no longer a key here: {cls.RENAMED[key]}" for key in old))
        return data


class ResourcesSection(Section):
    """The Ray workers a job starts (training ranks, actors or Serve replicas) and what each takes."""

    workers: int = Field(default=1, ge=1, description="training ranks, actors or replicas")
    cpus_per_worker: float = Field(default=1, gt=0)
    gpus_per_worker: float | Literal["auto"] = Field(
        default=AUTO, description="auto: one GPU per worker when the cluster has GPUs, else none")

    @field_validator("gpus_per_worker")
    @classmethod
    def _non_negative(cls, v: float | str) -> float | str:
        if v != AUTO and v < 0:
            raise ValueError(f"{v} must be >= 0, or auto")
        return v


class JobSpec(Section):
    """Every job spec has a ``kind`` and an optional ``name``; subclasses add their sections.
    What a spec runs lives in its kind's module under videomar/platform/jobs/."""

    kind: str
    name: str | None = Field(default=None, description="A name for runs, exports and MLflow")
    s3_credentials_file: str | None = Field(
        default=None, description="an AWS credentials file present on every node; its path, never its content, "
        "reaches the Ray workers (else they use their node's credentials)")
    _file: str = PrivateAttr(default="<spec>")

    def with_file(self, file: str) -> "JobSpec":
        """The spec, remembering the file it was read from (messages name it)."""
        self._file = file
        return self

    @property
    def file(self) -> str:
        return self._file

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
    def shape(self) -> Bucket:
        return Bucket.of(self)
