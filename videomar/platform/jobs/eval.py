"""``kind: eval``: measure a stage export on the held-out clips of its latent dataset.

    preflight: the export is complete; the dataset has the bucket and held-out clips
    run:       evaluation/job.run_eval_spec on the connected Ray
"""

from __future__ import annotations

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket
from videomar.artifacts.manifest import load_manifest
from videomar.errors import ConfigError
from videomar.platform.specs.eval import EvalSpec as Spec
from videomar.artifacts import export

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec) -> None:
    export.check_complete(storage.absolute(spec.export), "export")
    manifest_uri = storage.absolute(spec.data.manifest)
    if not storage.exists(manifest_uri):
        raise ConfigError(f"data.manifest: {manifest_uri} does not exist; run the precompute job first")
    manifest = load_manifest(manifest_uri)
    shape = Bucket.of(spec.data.bucket or export.read_export_config(storage.absolute(spec.export))["bucket"])
    bucket = manifest.bucket(shape)
    if bucket is None:
        raise ConfigError(f"data.bucket: {shape.key} is not in {manifest_uri}; its buckets are: "
                          f"{', '.join(x.shape.key for x in manifest.buckets) or 'none'}")
    if not bucket.counts.get("val"):
        raise ConfigError(f"data.manifest: bucket {bucket.shape.key} of {manifest_uri} has no held-out (val) clips; "
                          f"precompute with val_fraction > 0")


def run(spec: Spec, _checked=None) -> int:
    # Ray Data and torch load when the job runs, not when its spec is validated.
    from videomar.platform.evaluation.job import run_eval_spec

    return run_eval_spec(spec)
