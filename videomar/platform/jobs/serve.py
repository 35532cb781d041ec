"""``kind: serve``: a stage export behind a Ray Serve HTTP endpoint, until interrupted.

    preflight: the export is complete; the auth token source, when one is named, is readable;
               a non-loopback bind has a token
    run:       serving/forever.serve_forever on the connected Ray
"""

from __future__ import annotations

from videomar.artifacts import storage
from videomar.platform.serving.auth import TokenCheck, exposure
from videomar.platform.specs.serve import ServeSpec as Spec
from videomar.artifacts import export

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec) -> None:
    export.check_complete(storage.absolute(spec.export), "export")
    # An AuthError names the unreadable file or variable, or the exposed bind without a token.
    exposure(spec.http, TokenCheck.from_config(spec.auth))


def run(spec: Spec, _checked=None) -> int:
    # Ray Serve and torch load when the job runs, not when its spec is validated.
    from videomar.platform.serving.forever import serve_forever

    return serve_forever(spec)
