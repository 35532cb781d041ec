"""Connecting to Ray: the cluster named by RAY_ADDRESS (as inside a submitted job), else an
in-process local one. Never a bare ``ray.init()``, which can attach to a stale local cluster."""

from __future__ import annotations

import math
import os



def ensure_ray(num_cpus: int | None = None, min_cpus: float = 0) -> None:
    """Connect to RAY_ADDRESS's cluster, or start a local one.

    A local cluster gets ``num_cpus`` CPUs (default: this machine's cores), and never fewer than
    ``min_cpus`` (Ray's CPUs are scheduling slots: a job's workers must all fit).
    """
    import ray

    if ray.is_initialized():
        return
    # log_to_driver stays on: the workers' output (Ray Train, Ray Data, DeepSpeed, our ranks)
    # reaches this process, whose output the console sends to the run's log file; off the
    # console (--verbose, library use) it is printed here as Ray always did.
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        cpus = max(num_cpus or os.cpu_count() or 1, math.ceil(min_cpus))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True)


def connected() -> bool:
    """Ray is connected in this process (without importing it when it is not)."""
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def cluster_cpus() -> float:
    """CPUs the connected cluster has now (an autoscaling cluster may add more later)."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0))


def gpus_per_worker(wanted: float | str) -> float:
    """GPUs for one worker, actor or replica: ``auto`` is one when the connected cluster has GPUs
    (this machine's, before Ray is connected)."""
    if wanted != "auto":
        return float(wanted)
    import ray

    if ray.is_initialized():
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0
