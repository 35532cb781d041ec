"""The ``eval`` job spec: measure a stage export on the held-out clips of a latent dataset.

It reports the teacher-forced validation loss per target frame, continuation PSNR/SSIM against
the ground truth with the copy-the-last-frame baseline beside them, moving-digits consistency and
dynamics, VAE reconstruction PSNR/SSIM and FVD; it writes ``eval.json`` next to the export and logs
to the stage's MLflow run. ``EvalOptions`` is also what the training job passes when it evaluates
every stage at its end.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from videomar.platform.specs.base import BucketSection, JobSpec, ResourcesSection, Section


class FeaturesSection(Section):
    """The video feature extractor for FVD."""

    extractor: str = Field(
        default="builtin",
        description="'builtin' (offline; its FVD is not comparable to published numbers) or the path "
        "or s3:// URI of a TorchScript file, e.g. an I3D export",
    )
    size: int | None = Field(default=None, ge=8, description="resize frames to size x size first (I3D: 224)")
    call_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for its forward")


# Latent frames given as the condition of the psnr_<N>cond / ssim_<N>cond figures by default: with
# two, the motion is visible in the condition, so a model can beat copying the last frame.
MOTION_COND_FRAMES = 2
# Most held-out clips one evaluation continues: each costs a sampler run per condition.
MAX_EVAL_VIDEOS = 1024


class EvalOptions(Section):
    """How much to measure, and how to sample continuations."""

    RENAMED = {k: f"use resources.{k} (of the eval spec; a stage's eval uses the defaults)"
               for k in ("workers", "cpus_per_worker", "gpus_per_worker")}

    videos: int = Field(
        default=8, ge=2, le=MAX_EVAL_VIDEOS,
        description="held-out clips continued and compared: every held-out clip up to this many (FVD needs >= 2)",
    )
    loss_clips: int = Field(default=32, ge=1, description="held-out clips for the teacher-forced loss")
    cond_frames: int = Field(default=1, ge=1, description="latent frames given as the condition")
    motion_cond_frames: int | None = Field(
        default=MOTION_COND_FRAMES, ge=1,
        description="latent frames given as the condition for psnr_<N>cond and ssim_<N>cond (and their "
        "copy-last baselines); null, or clips too short for it: not measured",
    )
    sheet_videos: int = Field(
        default=8, ge=0, le=64,
        description="held-out clips drawn in the contact sheet (condition | generated | ground truth); 0: none",
    )
    steps: int = Field(default=16, ge=1, description="spatial decoding steps per generated frame")
    cfg: float = Field(default=3.0, ge=1.0, description="classifier-free guidance scale")
    temperature: float | None = Field(default=None, gt=0, description="fixed temperature; default: progressive")
    batch_size: int = Field(default=4, ge=1, description="clips per forward pass")
    seed: int = 0
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    digit_classifier: str | None = Field(
        default=None, description="cache file of the digit classifier; default under ~/.cache/videomar"
    )


class EvalDataSection(Section):
    manifest: str = Field(description="URI of the latent dataset's manifest.json (its 'val' split is used)")
    bucket: BucketSection | None = Field(default=None, description="default: the bucket the export was trained on")


class EvalMlflowSection(Section):
    tracking_uri: str | None = Field(default=None, description="server or store URI; else MLFLOW_TRACKING_URI")
    experiment: str = "videomar"
    run_id: str | None = Field(
        default=None, description="log into this run; default: the stage's run (found by its tag), else a new one"
    )


class EvalSpec(JobSpec):
    """Evaluate one stage export; see jobs/quickstart/eval.yaml."""

    kind: Literal["eval"]
    export: str = Field(description="URI of the stage export to evaluate (local path or s3://)")
    data: EvalDataSection
    options: EvalOptions = Field(default_factory=EvalOptions)
    resources: ResourcesSection = Field(default_factory=ResourcesSection,
                                        description="the Ray Data actors, each holding the export")
    mlflow: EvalMlflowSection = Field(default_factory=EvalMlflowSection)
