"""The ``train`` job spec: one curriculum stage of VideoMAR on Ray Train + DeepSpeed ZeRO.

Schema checks (types, ranges, unknown keys) happen when the YAML is parsed. Checks that need to
read storage (the dataset has the stage's bucket, ``init_from`` is a complete export) happen in
the job's preflight (videomar/platform/jobs/train.py), before anything starts on Ray.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from videomar.platform.specs.base import BucketSection, JobSpec, ModelSection, ResourcesSection, Section
from videomar.platform.specs.eval import EvalOptions

# MODEL.md section 7: lr = base_lr * global_batch / LR_REFERENCE_BATCH.
LR_REFERENCE_BATCH = 256
# The export folder inside a stage's run directory, unless the spec names another place.
EXPORT_DIR = "export"


class DataSection(Section):
    """The latent dataset (a precompute manifest) and the bucket this stage trains on."""

    manifest: str = Field(description="URI of the dataset manifest.json (local path or s3://)")
    bucket: BucketSection
    split: Literal["train", "val", "all"] = "train"
    memory_mb: int = Field(
        default=2048, ge=1, description="MiB of clips a worker may hold: a bucket whose share per worker fits "
        "is read once per stage and trained on from memory; a larger one is streamed in shuffled windows of "
        "half this size, the next one read ahead")


class OptimSection(Section):
    """AdamW and the batch: per-worker micro-batch, accumulation, lr scaled by the global batch."""

    batch_size: int = Field(default=8, ge=1, description="clips per worker per micro-step")
    grad_accum: int = Field(default=1, ge=1, description="micro-steps per optimizer step")
    base_lr: float = Field(default=1e-4, gt=0, description="lr for a global batch of 256")
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(default=0.02, ge=0)
    grad_clip: float = Field(default=1.0, ge=0, description="max global grad norm; 0 disables")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class ScheduleSection(Section):
    """Optimizer steps, linear warm-up, then constant or cosine decay."""

    steps: int = Field(ge=1, description="optimizer steps in this stage")
    warmup_steps: int = Field(default=0, ge=0)
    decay: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor as a fraction of lr")


class DeepSpeedSection(Section):
    zero_stage: int = Field(default=2, ge=0, le=3)
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 when workers have GPUs, else fp32"
    )


class TrainResources(ResourcesSection):
    """The training ranks (one DeepSpeed process each) and how Ray places them."""

    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class CheckpointSection(Section):
    every: int = Field(default=100, ge=1, description="optimizer steps between checkpoints")
    keep: int = Field(default=2, ge=1, description="checkpoints kept in storage")
    max_failures: int = Field(default=3, ge=0, description="worker failures survived (-1: unlimited)")


class MlflowSection(Section):
    tracking_uri: str | None = Field(
        default=None, description="server or store URI; else MLFLOW_TRACKING_URI; else sqlite in the work dir"
    )
    experiment: str = "videomar"
    curriculum: str | None = Field(default=None, description="parent run name grouping the stages")
    log_export: bool = Field(default=True, description="log the stage export as run artifacts")


class SamplesSection(Section):
    """Sample videos from the EMA weights, logged to MLflow every N steps and at the end. Each
    continues the first latent frame of one of the first training clips, with its caption."""

    every: int = Field(default=0, ge=0, description="optimizer steps between samples; 0: only at the end")
    count: int = Field(default=1, ge=0, description="videos per sampling; 0 disables samples")
    steps: int = Field(default=8, ge=1, description="spatial decoding steps per frame")
    cfg: float = Field(default=3.0, ge=1.0)
    format: Literal["gif", "mp4"] = "gif"


class InitFromSection(Section):
    """Start from a previous stage: its export, or one of its Ray Train checkpoints; the optimizer
    starts fresh."""

    RENAMED = {"uri": "use export: (a finished stage's export) or checkpoint: (a Ray Train checkpoint)"}

    export: str | None = Field(default=None, description="URI of a finished stage's export")
    checkpoint: str | None = Field(default=None, description="URI of a Ray Train checkpoint directory")
    carry: list[Literal["weights", "ema"]] = Field(default_factory=lambda: ["weights", "ema"])

    @model_validator(mode="after")
    def _one_source(self) -> "InitFromSection":
        if (self.export is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of export and checkpoint")
        return self

    @property
    def uri(self) -> str:
        return self.export or self.checkpoint  # type: ignore[return-value]

    @property
    def field(self) -> str:
        """The spec field naming the URI, for messages."""
        return "init_from.export" if self.export else "init_from.checkpoint"

    @field_validator("carry")
    @classmethod
    def _some_carry(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one of 'weights', 'ema'")
        return sorted(set(v))


class TrainSpec(JobSpec):
    """One curriculum stage; see jobs/quickstart/*.yaml and jobs/paper/*.yaml."""

    RENAMED = {"scaling": "use resources (workers, cpus_per_worker, gpus_per_worker, placement)"}

    kind: Literal["train"]
    name: str = Field(description="the stage's run name: its storage folder and MLflow child run")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection
    ema_rate: float = Field(default=0.9999, ge=0, lt=1)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    resources: TrainResources = Field(default_factory=TrainResources)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    storage: str = Field(default="runs", description="local path or s3:// URI for checkpoints and exports")
    export: str | None = Field(default=None, description="export URI; default <storage>/<name>/export")
    mlflow: MlflowSection = Field(default_factory=MlflowSection)
    samples: SamplesSection = Field(default_factory=SamplesSection)
    init_from: InitFromSection | None = None
    eval: EvalOptions | None = Field(
        default=None, description="evaluate the export on the dataset's held-out clips when the stage ends "
        "(metrics into the stage's MLflow run and eval.json next to the export); omit to skip")
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ ") or v.startswith("."):
            raise ValueError(f"{v!r} must be a plain name (no slashes, spaces or leading dot)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainSpec":
        from videomar.errors import ConfigError

        if self.schedule.warmup_steps > self.schedule.steps:
            raise ValueError(
                f"schedule.warmup_steps={self.schedule.warmup_steps} exceeds schedule.steps={self.schedule.steps}"
            )
        try:
            self.model.build()
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def global_batch(self) -> int:
        return self.optim.batch_size * self.optim.grad_accum * self.resources.workers

    @property
    def export_uri(self) -> str:
        """Where the stage's export goes: ``export``, else ``<storage>/<name>/export``."""
        from videomar.artifacts.storage import join

        return self.export or join(self.storage, self.name, EXPORT_DIR)

    @property
    def lr(self) -> float:
        """The peak learning rate: base_lr scaled linearly by the global batch."""
        return self.optim.base_lr * self.global_batch / LR_REFERENCE_BATCH

    def min_cluster_cpus(self) -> float:
        return self.resources.workers * self.resources.cpus_per_worker
