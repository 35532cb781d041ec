"""``kind: precompute``: videos -> VAE latent shards (Parquet) and a manifest, with Ray Data.

    preflight: the videos' source, the VAE export and the text encoder's folder exist (paths made
               absolute here), and every bucket fits the VAE's compression (from its config.json)
    run:       data_pipelines/precompute.run_precompute on the connected Ray
"""

from __future__ import annotations

import json

from videomar.artifacts import storage
from videomar.errors import ConfigError
from videomar.platform import console
from videomar.platform.specs.precompute import PrecomputeSpec as Spec

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec):
    """The pipeline configuration, after checking that its inputs are there."""
    config = spec.config()
    if not storage.exists(config.source):
        raise ConfigError(f"source: {config.source} does not exist")
    config_uri = storage.join(config.vae, "config.json")
    if not storage.exists(config_uri):
        raise ConfigError(f"vae: {config.vae} is not a VAE export (no config.json); run the train-vae job first, "
                          f"or point it at a diffusers VAE folder")
    check_buckets(spec, json.loads(storage.read_bytes(config_uri)), config_uri)
    if config.text is not None and not storage.exists(storage.join(config.text.path, "config.json")):
        raise ConfigError(f"text_encoder.path: {config.text.path} is not a Hugging Face model folder (no "
                          f"config.json); put the model there first (nothing is downloaded from the Hub)")
    return config


def check_buckets(spec: Spec, vae_config: dict, where: str) -> None:
    """Each bucket's height and width are multiples of the VAE's spatial compression and, for a
    pretrained video VAE, its frames 1 + a multiple of its temporal compression (frame 0 alone)."""
    from videomar.model.vae.loading import GEOMETRY, vae_geometry  # torch loads only here

    try:
        t, s, _ = vae_geometry(vae_config, where)
    except ConfigError as err:
        raise ConfigError(f"vae: {err}") from None
    name = vae_config.get("_class_name") or vae_config.get("format")
    for i, b in enumerate(spec.buckets):
        frames, height, width = b.shape
        causal = name in GEOMETRY  # the pretrained video VAEs take 1 + k*t frames only
        if (causal and (frames - 1) % t) or height % s or width % s:
            raise ConfigError(
                f"buckets[{i}]: {b.shape.key} does not fit the VAE {name} at {spec.vae} (temporal compression {t}, "
                f"spatial {s}): frames must be 1 + a multiple of {t}, height and width multiples of {s}")


def run(spec: Spec, config) -> int:
    # Ray Data and torch load when the job runs, not when its spec is validated.
    import time

    from videomar.data_pipelines.precompute import run_precompute

    with console.phase(f"precompute {spec.name or 'latents'}", unit="videos") as row:
        def progress(summary, seen: set, started: float) -> None:
            row.update(len(seen), summary.videos, clips=summary.encoded + summary.skipped, errors=len(summary.errors),
                       **{"clips/s": summary.encoded / max(time.monotonic() - started, 1e-9)})

        return run_precompute(config, log=console.say, progress=progress).exit_status
