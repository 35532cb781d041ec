"""The environment of the Ray heads videomar starts (``videomar up`` and the tests' heads)."""

from __future__ import annotations

from videomar.platform.local_cluster import head_environment

DRAIN_ENV = "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"


def test_a_head_stops_without_draining_unless_asked(monkeypatch):
    """Ray drains a node for up to 30 s on SIGTERM; a head we start has nowhere to drain to."""
    monkeypatch.delenv(DRAIN_ENV, raising=False)
    env = head_environment({"RAY_AUTH_MODE": "token"})
    assert env[DRAIN_ENV] == "0" and env["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv(DRAIN_ENV, "20")
    assert head_environment({})[DRAIN_ENV] == "20"
