"""From a validated TrainSpec to a resolved stage plan, after the checks that read storage.

``preflight(spec)`` fails before anything starts on Ray, naming the field at fault: the dataset
manifest is readable and has the stage's bucket, the model's latent channels match it, and
``init_from`` is a complete export or a checkpoint. ``plan_stage(spec)`` then fixes what the
workers need: absolute URIs, the latent shape and scale, precision, lr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from videomar.artifacts import checkpoint, export, storage
from videomar.artifacts.manifest import BucketManifest, DatasetManifest, load_manifest
from videomar.errors import ConfigError, SpecError
from videomar.ray_env import gpus_per_worker
from videomar.platform.specs.train import TrainSpec
from videomar.platform.training.deepspeed_config import resolve_precision
from videomar.platform.tracking import TrackingTarget, resolve_target


# The head's x0 clip is the dataset's scaled latent range: per channel |mean| + this many stds,
# the widest channel's. Four stds cover all but ~6e-5 of a Gaussian channel.
RANGE_STDS = 4.0
X0_RANGE_FALLBACK = 4.0  # scaled latents have about unit std, so 4 is the same bound without stats


@dataclass(frozen=True)
class DatasetInfo:
    """What training needs to know about the latent dataset's bucket."""

    manifest_uri: str
    latent_shape: tuple[int, int, int, int]  # (C, T', H', W')
    latent_scale: float
    vae_id: str
    vae_uri: str | None  # the VAE export the latents came from (copied into the stage export)
    clips: int  # clips in the chosen split of the bucket
    val_clips: int  # held-out clips of the bucket (what the end-of-stage eval uses)
    latent_range: float = X0_RANGE_FALLBACK  # |scaled latent| the data reaches (the head's x0 clip)
    text: dict | None = None  # the manifest's caption embeddings record (text encoder id, path, width)


@dataclass(frozen=True)
class StagePlan:
    """Everything a worker needs, resolved on the driver; picklable."""

    spec: TrainSpec  # with URIs made absolute
    spec_yaml: str
    run_dir: str  # <storage>/<name>: Ray Train's experiment directory
    export_uri: str
    dataset: DatasetInfo
    precision: str  # "bf16" | "fp32"
    lr: float
    tracking: TrackingTarget


def resolved_spec(spec: TrainSpec, info: DatasetInfo) -> TrainSpec:
    data = spec.model_dump(mode="json")
    overrides = data["model"]["overrides"]
    head = overrides.setdefault("head", {})
    if "x0_clip" not in head:  # an explicit null keeps MAR's unclipped sampling
        # A residual model's targets are differences of latents: a wider range (target_span).
        span = spec.model.build().target_span
        head["x0_clip"] = round(info.latent_range * span, 4)
    overrides.setdefault("latent_clip", round(info.latent_range, 4))
    data["data"]["manifest"] = storage.absolute(spec.data.manifest)
    data["storage"] = storage.absolute(spec.storage)
    data["export"] = storage.absolute(spec.export_uri)
    if spec.init_from is not None:
        key = spec.init_from.field.split(".")[1]
        data["init_from"][key] = storage.absolute(spec.init_from.uri)
    return TrainSpec.model_validate(data).with_file(spec.file)


def spec_yaml(spec: TrainSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def preflight(spec: TrainSpec) -> DatasetInfo:
    """Checks that read storage; SpecError names the spec file and the field at fault."""
    where = spec.file
    try:
        info = dataset_info(storage.absolute(spec.data.manifest), spec)
        if spec.samples.count and not info.vae_uri:
            raise ConfigError(f"samples.count={spec.samples.count}: the dataset manifest {info.manifest_uri} "
                              f"names no VAE to decode sample videos with; set samples.count: 0")
        if spec.init_from is not None:
            check_init_from(storage.absolute(spec.init_from.uri), spec, info)
        if spec.eval is not None and info.latent_shape[1] <= spec.eval.cond_frames:
            raise ConfigError(
                f"eval: bucket {spec.data.bucket.shape.key} has {info.latent_shape[1]} latent frame(s), but eval continues "
                f"clips after eval.cond_frames={spec.eval.cond_frames}; remove eval for this stage (images have no "
                f"next frame) or train on longer clips")
        if spec.eval is not None and info.val_clips == 0:
            raise ConfigError(f"eval: bucket {spec.data.bucket.shape.key} of {info.manifest_uri} has no held-out "
                              f"(val) clips to evaluate on; precompute with val_fraction > 0, or remove eval")
    except (ConfigError, FileNotFoundError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None
    return info


def dataset_info(manifest_uri: str, spec: TrainSpec) -> DatasetInfo:
    if not storage.exists(manifest_uri):
        raise ConfigError(f"data.manifest: {manifest_uri} does not exist; run the precompute job first")
    manifest = load_manifest(manifest_uri)
    b = spec.data.bucket
    bucket = manifest.bucket(b.shape)
    if bucket is None:
        have = ", ".join(x.shape.key for x in manifest.buckets) or "none"
        raise ConfigError(
            f"data.bucket: {b.shape.key} (frames x height x width) is not in {manifest_uri}; "
            f"its buckets are: {have}"
        )
    shape = tuple(int(v) for v in bucket.latent_shape)
    model = spec.model.build()
    if shape[0] != model.latent_channels:
        raise ConfigError(
            f"model.latent_channels={model.latent_channels} does not match the dataset's "
            f"{shape[0]} latent channels (VAE {manifest.vae.get('class_name', manifest.vae_id)}, {manifest_uri}); "
            f"set model.overrides.latent_channels"
        )
    if shape[2] % model.patch_size or shape[3] % model.patch_size:
        raise ConfigError(f"model.patch_size={model.patch_size} does not divide the latent grid {shape[2:]} of "
                          f"bucket {b.shape.key} (VAE {manifest.vae.get('class_name', manifest.vae_id)})")
    check_text(model, manifest, manifest_uri)
    clips = bucket_clips(bucket, spec.data.split)
    if clips < spec.resources.workers * spec.optim.batch_size:
        raise ConfigError(
            f"data.bucket: {b.shape.key} has {clips} {spec.data.split} clips, fewer than one batch for every "
            f"worker (resources.workers={spec.resources.workers} x optim.batch_size={spec.optim.batch_size})"
        )
    return DatasetInfo(
        manifest_uri=manifest_uri,
        latent_shape=shape,  # type: ignore[arg-type]
        latent_scale=float(manifest.latent_scale),
        vae_id=str(manifest.vae_id),
        vae_uri=manifest_vae_uri(manifest, manifest_uri),
        clips=clips,
        val_clips=bucket_clips(bucket, "val"),
        latent_range=latent_range(manifest),
        text=manifest.text or None,
    )


def check_text(model, manifest: DatasetManifest, manifest_uri: str) -> None:
    """A model on precomputed text needs the dataset's caption embeddings, of its text_dim."""
    if model.text_encoder != "precomputed":
        return
    if not manifest.text:
        raise ConfigError(f"model.text_encoder='precomputed': the dataset {manifest_uri} has no caption embeddings; "
                          f"precompute it with text_encoder: {{path: ...}}")
    if int(manifest.text["width"]) != model.text_dim:
        raise ConfigError(f"model.text_dim={model.text_dim} differs from the width {manifest.text['width']} of the "
                          f"dataset's text encoder ({manifest.text['path']}); set model.overrides.text_dim")


def latent_range(manifest: DatasetManifest) -> float:
    """The range of the dataset's scaled latents, from the manifest's per-channel statistics."""
    stats = list(zip(manifest.channel_mean, manifest.channel_std))
    if not stats:
        return X0_RANGE_FALLBACK
    return float(manifest.latent_scale) * max(abs(m) + RANGE_STDS * s for m, s in stats)


def bucket_clips(bucket: BucketManifest, split: str) -> int:
    return bucket.clips if split == "all" else int(bucket.counts.get(split, 0))


def manifest_vae_uri(manifest: DatasetManifest, manifest_uri: str) -> str | None:
    """The manifest's VAE location, absolute (it may be relative to the manifest's folder)."""
    if not manifest.vae_uri:
        return None
    return storage.resolve(manifest.vae_uri, storage.folder_of(manifest_uri))


def check_init_from(uri: str, spec: TrainSpec, info: DatasetInfo) -> None:
    """init_from.export must be a complete export of a model like ours (trained on latents of the
    same VAE); init_from.checkpoint a Ray Train checkpoint directory."""
    field = spec.init_from.field
    if spec.init_from.checkpoint is not None:
        if not checkpoint.is_checkpoint(uri):
            raise ConfigError(f"{field}: {uri} is not a checkpoint directory (no {checkpoint.STATE_FILE})")
        return
    config = export.read_export_config(uri, field=field)
    ours = _architecture(spec.model.build().to_dict())
    theirs = _architecture(config.get("model", {}))
    differ = sorted(k for k in ours if k in theirs and _norm(ours[k]) != _norm(theirs[k]))
    if differ:
        raise ConfigError(
            f"{field}: the export {uri} has a different model ({', '.join('model.' + k for k in differ)}); "
            f"a stage can only start from the same architecture"
        )
    if config.get("vae_id") and config["vae_id"] != info.vae_id:
        raise ConfigError(f"{field}: the export {uri} was trained on latents of VAE "
                          f"{config['vae_id']}, but data.manifest uses {info.vae_id}")


def _architecture(model: dict) -> dict:
    """A model config without its sampling settings (the clips follow each dataset's range)."""
    head = {k: v for k, v in model.get("head", {}).items() if k != "x0_clip"}
    model = {k: v for k, v in model.items() if k != "latent_clip"}  # the data's range, too
    return {**model, "head": head} if "head" in model else model


def _norm(value: Any) -> Any:
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else (
        {k: _norm(v) for k, v in value.items()} if isinstance(value, dict) else value)


def plan_stage(spec: TrainSpec, info: DatasetInfo) -> StagePlan:
    spec = resolved_spec(spec, info)
    cuda = gpus_per_worker(spec.resources.gpus_per_worker) > 0
    try:
        precision = resolve_precision(spec.deepspeed.precision, cuda)
    except ValueError as err:
        raise SpecError(f"{spec.file}: {err}") from None
    workdir = spec.storage
    return StagePlan(
        spec=spec,
        spec_yaml=spec_yaml(spec),
        run_dir=storage.join(spec.storage, spec.name),
        export_uri=spec.export,  # type: ignore[arg-type]
        dataset=info,
        precision=precision,
        lr=spec.lr,
        tracking=resolve_target(spec.mlflow.tracking_uri, spec.mlflow.experiment, workdir),
    )
