"""A serve application on a fresh local Ray for an e2e module: a tiny export served on 127.0.0.1
with a bearer token, stopped (Serve, then Ray) when the module is done."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def served(tmp_path_factory, token: str, extra: dict[str, Any]) -> Iterator[str]:
    """Yield the base URL of ``videomar serve`` for a tiny export; ``extra`` adds spec sections
    (deployment, defaults, limits) to the loopback http, storage and auth ones."""
    import ray
    from ray import serve

    from tests.support.ray_local import local_ray
    from tests.support.tiny_export import write_tiny_export
    from videomar.platform.processes import free_port
    from videomar.platform.jobs import parse_spec
    from videomar.platform.serving.app import start
    from videomar.platform.serving.auth import TokenCheck, digest

    export = write_tiny_export(str(tmp_path_factory.mktemp("export") / "stage"))
    ray.shutdown()
    local_ray()
    spec = parse_spec({
        "kind": "serve", "export": export, "http": {"host": "127.0.0.1", "port": free_port()},
        "storage": {"root": str(tmp_path_factory.mktemp("outputs"))}, "auth": {"token_env": None}, **extra,
    })
    try:
        yield start(spec, token=TokenCheck(digest(token)))
    finally:
        serve.shutdown()
        ray.shutdown()
