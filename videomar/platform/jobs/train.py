"""``kind: train``: one curriculum stage on Ray Train + DeepSpeed ZeRO, then its optional eval.

    preflight: the dataset manifest has the stage's bucket and matches the model, init_from is a
               complete export or a checkpoint, the bucket has held-out clips when eval is asked
    run:       training/trainer.run_stage (the workers run training/loop.train_func), then
               evaluation/job.evaluate_export on the held-out clips, into the stage's MLflow run
"""

from __future__ import annotations

from videomar.platform.specs.train import TrainSpec as Spec
from videomar.platform.training.config import DatasetInfo
from videomar.platform.training.config import preflight as _preflight

__all__ = ["Spec", "preflight", "run"]


def preflight(spec: Spec) -> DatasetInfo:
    return _preflight(spec)


def run(spec: Spec, info: DatasetInfo) -> int:
    # Ray, DeepSpeed and MLflow load when a stage runs, not when a spec is validated.
    from videomar.platform.training.trainer import run_stage

    result = run_stage(spec, info)
    if spec.eval is not None:
        evaluate(spec, result)
    return 0


def evaluate(spec: Spec, result) -> dict:
    """The end-of-stage eval on the dataset's held-out clips, logged into the stage's MLflow run."""
    from videomar.platform.evaluation.job import evaluate_export

    b = spec.data.bucket
    found = evaluate_export(result.export_uri, result.manifest_uri, (b.frames, b.height, b.width),
                            options=spec.eval, run_id=result.run_id, tracking_uri=result.tracking_uri)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(found["metrics"].items()) if isinstance(v, float))
    print(f"{spec.name}: eval on held-out clips: {shown}", flush=True)
    return found
