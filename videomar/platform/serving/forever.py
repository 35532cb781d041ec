"""``videomar serve`` and a ``kind: serve`` job: start the application and block until stopped.

Ctrl-C (SIGINT) and SIGTERM (what the Jobs API's stop sends) stop it the same way: the
application is deleted and, when no other application is left on the cluster, Serve itself is
shut down (its controller and HTTP proxies are detached actors: they would outlive the job). A
local Ray this process started then stops with it (ray.shutdown at exit), leaving no process.
"""

from __future__ import annotations

import signal
import threading
import time

from videomar.platform.serving.app import start
from videomar.platform.serving.auth import TokenCheck, exposure
from videomar.platform.serving.engine import log
from videomar.platform.specs.serve import ServeSpec


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def serve_forever(spec: ServeSpec) -> int:
    """Start, print the URL, and block until Ctrl-C or SIGTERM (also during start-up); then stop
    serving."""
    if threading.current_thread() is threading.main_thread():  # else the caller handles signals
        signal.signal(signal.SIGTERM, _interrupt)
    from videomar.platform import console

    try:
        for note in exposure(spec.http, TokenCheck.from_config(spec.auth)):
            console.say(f"videomar serve: {note}")
        with console.phase(f"deploy {spec.app_name} on Ray Serve"):
            url = start(spec)
        console.say(f"videomar serving {spec.export} at {url} (GET {url}/v1/model); Ctrl-C stops")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.say(f"stopping {spec.app_name}")
    finally:
        stop_serving(spec.app_name)
    return 0


def stop_serving(app_name: str) -> None:
    """Delete the application; shut Serve down when it was the last one."""
    from ray import serve

    try:
        serve.delete(app_name)
        if not serve.status().applications:
            serve.shutdown()
    except Exception:  # noqa: BLE001 -- stopping must finish; Ray may already be going away
        log.exception("stopping %s", app_name)
