"""The ``train-vae`` job spec: train the built-in causal video VAE on clips of videos.

Schema checks (types, ranges, unknown keys, the VAE config, clip shapes the VAE can take) happen
when the YAML is parsed; the source is read when the job runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from videomar.platform.specs.base import JobSpec, Section
from videomar.platform.specs.train import TrainResources


class VAEDataSection(Section):
    """How clips are cut from the videos (resize + centre crop)."""

    RENAMED = {"source": "moved to the top level of the spec: source"}

    frames: int = Field(default=9, ge=1,
                        description="pixel frames per clip: 1 + a multiple of the temporal compression")
    height: int = Field(default=32, ge=8, description="clip height in pixels: a multiple of the spatial compression")
    width: int = Field(default=32, ge=8, description="clip width in pixels: a multiple of the spatial compression")
    stride: int = Field(default=1, ge=1, description="source frames between clip frames")
    clips_per_video: int = Field(default=2, ge=1,
                                 description="non-overlapping clips taken from the start of each video")
    max_videos: int | None = Field(default=None, ge=1, description="use only the first N videos (None: all)")


class VAETrainSection(Section):
    """AdamW on reconstruction MSE + kl_weight * KL; every worker draws its own batches."""

    steps: int = Field(ge=1, description="optimizer steps")
    batch_size: int = Field(default=8, ge=1, description="clips per worker per step")
    lr: float = Field(default=2e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1.0, ge=0, description="max global grad norm; 0 disables")
    log_every: int = Field(default=10, ge=1, description="steps between progress reports")
    eval_clips: int = Field(default=32, ge=1, description="clips (the first ones) PSNR is measured on")
    seed: int = 0


class VAETrackingSection(Section):
    tracking_uri: str | None = Field(
        default=None, description="server or store URI; else MLFLOW_TRACKING_URI; else sqlite in the work dir"
    )
    experiment: str = "videomar-vae"


class TrainVAESpec(JobSpec):
    """Train the causal video VAE with Ray Train (DDP) and export it; see jobs/quickstart/vae.yaml."""

    RENAMED = {"scaling": "use resources (workers, cpus_per_worker, gpus_per_worker, placement)",
               "output": "use export (the folder the VAE export is written to)"}

    kind: Literal["train-vae"]
    name: str = Field(default="vae", description="the run's name (MLflow run name)")
    source: str = Field(description="a manifest (.jsonl with path and caption per line, paths relative to it) "
                                    "or a folder of videos; local path or s3://")
    data: VAEDataSection = Field(default_factory=VAEDataSection)
    vae: dict[str, Any] = Field(default_factory=dict, description=(
        "the VAE's shape (videomar.model.vae.VAEConfig): latent_channels, temporal_compression (1, 2, 4, 8), "
        "spatial_compression (4, 8, 16), patch_size, base_channels, max_channels, blocks_per_level, kl_weight; "
        "the latent scale is measured by the job"))
    train: VAETrainSection
    resources: TrainResources = Field(default_factory=TrainResources)
    export: str = Field(description="directory (local or s3://) the export (model.safetensors, config.json) goes to")
    storage: str | None = Field(default=None, description=(
        "where Ray Train keeps the run's final checkpoint (local or s3://), reachable from every node; "
        "default: a temporary folder on the driver's machine (single-node clusters only)"))
    mlflow: VAETrackingSection | None = Field(default=None, description="log params and PSNR to MLflow when set")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainVAESpec":
        if "scale" in self.vae:
            raise ValueError("vae.scale: the job measures the latent scale on the training clips; remove it")
        config = self.vae_config()
        t, s = config.temporal_compression, config.spatial_compression
        if (self.data.frames - 1) % t:
            raise ValueError(f"data.frames={self.data.frames} must be 1 + a multiple of vae.temporal_compression={t}")
        for field in ("height", "width"):
            value = getattr(self.data, field)
            if value % s:
                raise ValueError(f"data.{field}={value} must be a multiple of vae.spatial_compression={s}")
        return self

    def vae_config(self):
        """The validated VAEConfig; the error names the ``vae.`` field at fault."""
        from videomar.errors import ConfigError
        from videomar.model.vae import VAEConfig

        try:
            return VAEConfig.from_dict(dict(self.vae), where="vae")
        except ConfigError as err:
            raise ValueError(str(err)) from None
