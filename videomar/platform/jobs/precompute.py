"""``kind: precompute``: videos -> VAE latent shards (Parquet) and a manifest, with Ray Data.

    preflight: the videos' source and the VAE export exist (paths made absolute here)
    run:       data_pipelines/precompute.run_precompute on the connected Ray
"""

from __future__ import annotations

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
    if not storage.exists(storage.join(config.vae, "config.json")):
        raise ConfigError(f"vae: {config.vae} is not a VAE export (no config.json); run the train-vae job first")
    return config


def run(spec: Spec, config) -> int:
    # Ray Data and torch load when the job runs, not when its spec is validated.
    import time

    from videomar.data_pipelines.precompute import run_precompute

    with console.phase(f"precompute {spec.name or 'latents'}", unit="videos") as row:
        def progress(summary, seen: set, started: float) -> None:
            row.update(len(seen), summary.videos, clips=summary.encoded + summary.skipped, errors=len(summary.errors),
                       **{"clips/s": summary.encoded / max(time.monotonic() - started, 1e-9)})

        return run_precompute(config, log=console.say, progress=progress).exit_status
