"""``kind: train-vae``: train the causal video VAE with Ray Train, measure it, export it.

    preflight: the videos' source exists
    run:       platform/training/vae.run_train_vae on the connected Ray
"""

from __future__ import annotations

from videomar.artifacts import storage
from videomar.errors import ConfigError
from videomar.platform import console
from videomar.platform.specs.train_vae import TrainVAESpec as Spec

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec) -> None:
    source = storage.absolute(spec.source)
    if not storage.exists(source):
        raise ConfigError(f"source: {source} does not exist")


def run(spec: Spec, _checked=None) -> int:
    # Ray Train and torch load when the job runs, not when its spec is validated.
    from videomar.platform.training.vae import run_train_vae

    run_train_vae(spec, out=console.say)
    return 0
