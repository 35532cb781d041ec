"""The ``precompute`` job spec: videos -> VAE latent shards (Parquet) for training, with Ray Data.

Local paths are relative to the current directory of the process that runs the spec; they are
made absolute there before any Ray task starts.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from videomar.platform.specs.base import BucketSection, JobSpec, ResourcesSection, Section


class ClipsSection(Section):
    """How clips are cut from each video."""

    stride: int = Field(default=1, ge=1, description="take every stride-th source frame")
    fps: float | None = Field(default=None, gt=0, description="target frame rate; sets the stride per video "
                                                                "(overrides stride)")
    max_per_video: int | None = Field(default=None, ge=1, description="clips per video and bucket (None = all)")


class EncodeSection(Section):
    """Batching of the VAE encoder actors (their count and CPUs/GPUs are ``resources``)."""

    RENAMED = {k: f"use resources.{k}" for k in ("workers", "cpus_per_worker", "gpus_per_worker")}

    batch_size: int = Field(default=8, ge=1, description="clips per VAE call")
    decode_cpus: float = Field(default=1.0, gt=0, description="CPUs reserved per decode or write task")


class TextEncoderSection(Section):
    """Caption embeddings: a local Hugging Face text model (a T5-style encoder, or a decoder-only
    LLM whose last hidden state is taken), never downloaded. Each distinct caption is encoded once."""

    path: str = Field(description="the model's local folder (config.json, weights, tokenizer files)")
    max_length: int = Field(default=300, ge=1, description="tokens per caption, at most (longer ones are cut)")
    batch_size: int = Field(default=32, ge=1, description="captions per encoder call")
    workers: int = Field(default=1, ge=1, description="encoder actors")
    gpus_per_worker: float | str = Field(default="auto", description="GPUs per encoder actor; auto = 1 when the "
                                                                      "cluster has GPUs")


class PrecomputeSpec(JobSpec):
    RENAMED = {"videos": "use source (a folder, an s3:// prefix, or a manifest of videos)"}

    kind: str = "precompute"
    source: str = Field(description="a folder, an s3:// prefix, or a CSV/JSONL/Parquet manifest (path, caption, "
                                    "optional start/end)")
    source_outside_manifest: bool = Field(default=False, description="let a manifest's paths leave its folder "
                                          "(else such rows are errors)")
    vae: str = Field(description="the VAE folder (local or s3://): a train-vae export, or a diffusers VAE folder "
                                 "(AutoencoderKL, AutoencoderKLWan, AutoencoderKLCosmos, AutoencoderKLCogVideoX, "
                                 "AutoencoderKLLTXVideo)")
    output: str = Field(description="the dataset folder (local or s3://); manifest.json is written there last")
    buckets: list[BucketSection] = Field(min_length=1, description="(frames, height, width) buckets to produce")
    clips: ClipsSection = ClipsSection()
    encode: EncodeSection = EncodeSection()
    resources: ResourcesSection = Field(default_factory=ResourcesSection, description="the VAE encoder actors")
    val_fraction: float = Field(default=0.1, ge=0, lt=1, description="fraction of source videos held out as 'val'")
    shard_clips: int = Field(default=256, ge=1, description="clips per shard (at most)")
    max_error_fraction: float = Field(default=0.0, ge=0, le=1,
                                      description="exit non-zero when more than this fraction of videos fail")
    text_encoder: TextEncoderSection | None = Field(default=None, description="embed the captions with this "
                                                    "local text model, stored beside the latents")

    @model_validator(mode="after")
    def _distinct_buckets(self) -> "PrecomputeSpec":
        keys = [b.shape.key for b in self.buckets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"buckets: listed twice: {sorted({k for k in keys if keys.count(k) > 1})}")
        return self

    def config(self):
        """The pipeline configuration (paths made absolute against the current directory)."""
        from videomar.data_pipelines.precompute import PrecomputeConfig
        from videomar.data_pipelines.stages import ClipParams
        from videomar.data_pipelines.text import TextConfig

        clips = ClipParams(
            buckets=tuple(b.shape for b in self.buckets), stride=self.clips.stride,
            target_fps=self.clips.fps, max_clips=self.clips.max_per_video, val_fraction=self.val_fraction,
        )
        return PrecomputeConfig(
            source=self.source, vae=self.vae, output=self.output, clips=clips, encode_workers=self.resources.workers,
            encode_batch=self.encode.batch_size, encode_cpus=self.resources.cpus_per_worker,
            encode_gpus=self.resources.gpus_per_worker, decode_cpus=self.encode.decode_cpus,
            shard_clips=self.shard_clips, max_error_fraction=self.max_error_fraction,
            outside_manifest=self.source_outside_manifest,
            text=None if self.text_encoder is None else TextConfig(
                path=self.text_encoder.path, max_length=self.text_encoder.max_length,
                batch_size=self.text_encoder.batch_size, workers=self.text_encoder.workers,
                gpus=self.text_encoder.gpus_per_worker),
        ).resolved()
