"""The application a KubeRay RayService deploys (infra/kuberay/rayservice.yaml).

Its ``serveConfigV2`` names ``videomar.platform.rayservice:app`` with ``args: {spec: PATH}``; Ray
Serve calls ``app(args)`` and deploys what it returns: the same application ``videomar serve``
runs, built from a ``kind: serve`` spec baked into the image. The HTTP host and port come from
the RayService's ``http_options``, not from the spec.
"""

from videomar.errors import SpecError
from videomar.platform.jobs import load_spec
from videomar.platform.serving.app import build_app


def app(args: dict):
    spec_path = args.get("spec")
    if not spec_path:
        raise SpecError("RayService args: 'spec' (the path of a kind: serve spec) is missing")
    spec = load_spec(spec_path)
    if spec.kind != "serve":
        raise SpecError(f"{spec_path}: kind: a RayService needs a 'serve' spec, got {spec.kind!r}")

    return build_app(spec)
