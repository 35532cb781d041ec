"""Shared test set-up. Fixtures for servers live in tests/support/ and are imported by the tests
that need them; everything binds 127.0.0.1 and is stopped by the fixture that started it."""

from __future__ import annotations

import os

import pytest

# Ray 2.60 asks for login tokens unless told otherwise; tests run an unauthenticated local Ray.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread per process: tests use tiny models, and with two cores shared by Ray workers,
# servers and the test process, multi-threaded torch ops spin-wait and run up to 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Keep MLflow from writing mlruns/ or mlflow.db into the checkout when a test forgets a URI.
os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:////tmp/videomar-tests-mlflow.db")


@pytest.fixture(scope="session")
def ray_local():
    """An in-process local Ray (never a bare ray.init(), which may attach to a stale cluster).

    Tests that need another kind of cluster call ray.shutdown() first; the next user of this
    fixture gets a fresh one.
    """
    import ray

    def start():
        if not ray.is_initialized():
            ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        return ray

    yield start()
    ray.shutdown()


@pytest.fixture
def ray_cluster(ray_local):
    """Per-test access to the shared local Ray, re-started if an earlier test shut it down."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    return ray
