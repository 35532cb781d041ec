"""The tests' local Ray: one in-process cluster with TEST_CPUS CPU slots.

Two training workers take a CPU slot each and Ray Data needs one more to read their shards, so a
cluster started with this machine's two cores would leave the workers waiting for data forever.
Anything in the tests that needs a local Ray goes through ``local_ray()``; a cluster started
otherwise (smaller, or by a test that needed its own) is replaced.
"""

from __future__ import annotations

TEST_CPUS = 4


def local_ray():
    """The connected local Ray, started (or restarted) with TEST_CPUS CPUs; returns the ray module."""
    import ray

    if ray.is_initialized() and ray.cluster_resources().get("CPU", 0) < TEST_CPUS:
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=TEST_CPUS, include_dashboard=False, log_to_driver=False)
    return ray
