"""``kind: generate``: offline batch generation, one MP4 per input, on a Ray Data actor pool.

    preflight: the export is complete; every input line is valid (errors name the line)
    run:       serving/offline.run_generate on the connected Ray
"""

from __future__ import annotations

from videomar.platform.specs.generate import GenerateSpec as Spec

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec) -> list[dict]:
    """The resolved input rows."""
    from videomar.platform.serving.offline import check_inputs

    return check_inputs(spec)


def run(spec: Spec, rows: list[dict]) -> int:
    from videomar.platform.serving.offline import run_generate

    return run_generate(spec, rows)
