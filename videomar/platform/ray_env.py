"""Connecting to Ray: the cluster named by RAY_ADDRESS (as inside a submitted job), else an
in-process local one. Never a bare ``ray.init()``, which can attach to a stale local cluster."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
