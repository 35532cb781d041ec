"""Shared test set-up. Fixtures for servers live in tests/support/ and are registered here;
everything binds 127.0.0.1 and is stopped by the fixture that started it."""

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
# ... nor the console's log files (verbs run in this process write them under ./logs otherwise).
os.environ.setdefault("VIDEOMAR_LOG_DIR", "/tmp/videomar-tests-logs")

# Registered here, once, so the whole session shares one of each server.
from tests.support.mlflow_server import mlflow_server  # noqa: E402,F401  (one server per session)
from tests.support.ray_local import local_ray  # noqa: E402
from tests.support.s3 import s3_server  # noqa: E402,F401  (one server per session)


@pytest.fixture(scope="session")
def _ray_session():
    """Shuts down whichever local Ray is left at the end of the session."""
    import ray

    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session):
    """An in-process local Ray for a module's fixtures (never a bare ray.init(), which may attach
    to a stale cluster); started again if an earlier module shut it down."""
    return local_ray()


@pytest.fixture
def ray_cluster(ray_local, request):
    """Per-test access to the shared local Ray, re-started if an earlier test shut it down or
    left a smaller one. After a failed test it is shut down: the next test starts clean rather
    than inheriting half-finished jobs."""
    ray = local_ray()
    yield ray
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ray.shutdown()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
