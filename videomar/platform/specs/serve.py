"""The ``serve`` job spec: a stage export behind a Ray Serve HTTP endpoint.

``run()`` deploys the application on the connected Ray cluster and blocks until interrupted.
Frames everywhere in the API are pixel frames of the output video, the condition image counted
as frame 0 (see videomar.platform.serving.engine).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from videomar.platform.specs.base import JobSpec, ResourcesSection, Section

DEFAULT_TOKEN_ENV = "VIDEOMAR_API_TOKEN"


class HttpSection(Section):
    host: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 exposes the service")
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_hosts: list[str] | None = Field(
        default=None, description="names the Host header may carry; default: the bind address (and the "
        "loopback names on loopback); any on a 0.0.0.0 bind")


class AutoscalingSection(Section):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=8, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscalingSection":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas={self.max_replicas} is below min_replicas={self.min_replicas}")
        return self


class DeploymentSection(Section):
    """The sampler deployment: request batching and autoscaling (replicas are ``resources``)."""

    RENAMED = {"replicas": "use resources.workers", "cpus_per_replica": "use resources.cpus_per_worker",
               "gpus_per_replica": "use resources.gpus_per_worker"}

    max_batch_size: int = Field(default=8, ge=1, description="requests sampled together in one call")
    batch_wait_timeout_s: float = Field(default=0.05, ge=0, description="wait for a batch to fill")
    max_ongoing_requests: int = Field(default=16, ge=1, description="per replica; >= max_batch_size")
    autoscaling: AutoscalingSection | None = Field(default=None, description="replace resources.workers by "
                                                   "a replica count that follows the load")

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> "DeploymentSection":
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests={self.max_ongoing_requests} must be >= max_batch_size="
                f"{self.max_batch_size}, or batches can never fill"
            )
        return self


class SamplerDefaults(Section):
    """Values used when a request leaves them out."""

    steps: int = Field(default=16, ge=1, description="spatial steps per latent frame")
    cfg: float = Field(default=3.0, ge=1.0)
    temperature: float | None = Field(default=None, gt=0, description="None: progressive schedule")


class Limits(Section):
    """What one request may ask for; larger asks get HTTP 4xx naming the field."""

    max_frames: int = Field(default=33, ge=2, description="pixel frames per video, image included")
    max_steps: int = Field(default=64, ge=1)
    max_height: int = Field(default=256, ge=8)
    max_width: int = Field(default=256, ge=8)
    max_batch_inputs: int = Field(default=256, ge=1, description="inputs per POST /v1/batches")
    max_body_bytes: int = Field(default=16 * 2**20, ge=1024, description="request body, counted as it arrives")
    max_running_batches: int = Field(default=4, ge=1, description="POST /v1/batches running at once per "
                                     "ingress replica; more get 429 with Retry-After")
    max_stream_frames: int = Field(default=1024, ge=2, description="pixel frames per POST /v1/streams, image "
                                   "included")
    max_streams: int = Field(default=4, ge=1, description="streams running at once per sampler replica; "
                             "more get 429 with Retry-After")
    stream_idle_timeout_s: float = Field(default=30.0, gt=0, description="a replica stops a stream whose "
                                         "frames nobody takes for this long (a disconnect stops it at once)")


class StorageSection(Section):
    root: str = Field(
        default="./videomar-outputs",
        description="local path or s3:// URI; /v1/batches outputs are confined below it")


class AuthSection(Section):
    """A bearer token for every endpoint but /healthz, from a file or an environment variable
    (the file wins when both are set). No token configured: no authentication, and the service
    binds loopback only (a non-loopback http.host is refused)."""

    token_env: str | None = DEFAULT_TOKEN_ENV
    token_file: str | None = None


class ServeSpec(JobSpec):
    RENAMED = {"checkpoint": "use export (the URI of a finished stage's export)"}

    kind: Literal["serve"] = "serve"
    export: str = Field(description="URI of a complete stage export (local path or s3://)")
    app_name: str = "videomar"
    http: HttpSection = HttpSection()
    deployment: DeploymentSection = DeploymentSection()
    resources: ResourcesSection = Field(default_factory=ResourcesSection,
                                        description="the sampler's replicas (fixed count unless autoscaling)")
    defaults: SamplerDefaults = SamplerDefaults()
    limits: Limits = Limits()
    storage: StorageSection = StorageSection()
    auth: AuthSection = AuthSection()

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> "ServeSpec":
        if self.defaults.steps > self.limits.max_steps:
            raise ValueError(f"defaults.steps={self.defaults.steps} exceeds limits.max_steps={self.limits.max_steps}")
        return self
