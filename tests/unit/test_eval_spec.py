"""The eval spec, eval.json, the per-stage plot, and MLflow logging of eval results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from videomar.platform.evaluation import report
from videomar.platform.evaluation.job import stage_history, stage_name
from videomar.errors import SpecError
from videomar.platform.jobs import load_spec, parse_spec
from videomar.platform.specs.eval import EvalSpec

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]


def result(stage: str, psnr: float) -> dict:
    return {
        "stage": stage,
        "export": f"/x/{stage}/export",
        "bucket": [5, 32, 32],
        "metrics": {"val_loss": 0.5, "psnr": psnr, "psnr_copy_last": 12.0, "ssim": 0.4, "ssim_copy_last": 0.5,
                    "digit_consistency": math.nan, "digit_consistency_gt": 0.8, "dynamics": 0.02,
                    "dynamics_gt": 0.03, "vae_psnr": 25.0, "fvd": 3.0},
        "val_loss_by_frame": {"1": 0.6, "2": 0.4},
        "feature_extractor": "builtin-conv3d-seed0",
    }


def test_quickstart_eval_spec_parses():
    spec = load_spec(REPO / "jobs/quickstart/eval.yaml")
    assert isinstance(spec, EvalSpec)
    assert spec.options.videos >= 32 and spec.data.bucket is None  # the quickstart's quality covers >= 32 clips
    assert spec.options.motion_cond_frames == 2 and spec.options.sheet_videos > 0


def test_eval_spec_errors_name_the_field():
    base = {"kind": "eval", "export": "e", "data": {"manifest": "m.json"}}
    with pytest.raises(SpecError, match=r"options\.videos"):
        parse_spec({**base, "options": {"videos": 1}})
    with pytest.raises(SpecError, match=r"options\.videos"):
        parse_spec({**base, "options": {"videos": 100_000}})
    with pytest.raises(SpecError, match=r"options\.sheet_videos"):
        parse_spec({**base, "options": {"sheet_videos": -1}})
    with pytest.raises(SpecError, match=r"options\.features\.extractr: unknown key"):
        parse_spec({**base, "options": {"features": {"extractr": "x"}}})
    with pytest.raises(SpecError, match=r"data\.manifest"):
        parse_spec({**base, "data": {}})


def test_eval_json_round_trips_with_nan_as_null(tmp_path):
    uri = report.write_eval_json(str(tmp_path), result("s1", 20.0))
    text = Path(uri).read_text()
    assert "NaN" not in text
    back = report.read_eval_json(str(tmp_path))
    assert back["metrics"]["digit_consistency"] is None and back["metrics"]["psnr"] == 20.0
    assert report.read_eval_json(str(tmp_path / "nothing")) is None


def write_stage(root: Path, name: str, parent: Path | None, evaluated: dict | None) -> Path:
    export = root / name / "export"
    export.mkdir(parents=True)
    spec = {"kind": "train", "name": name, **({"init_from": {"export": str(parent)}} if parent else {})}
    (export / "spec.yaml").write_text(yaml.safe_dump(spec))
    if evaluated:
        report.write_eval_json(str(export), evaluated)
    return export


def test_stage_history_follows_init_from_and_skips_unevaluated_stages(tmp_path):
    s1 = write_stage(tmp_path, "s1", None, result("s1", 14.0))
    s2 = write_stage(tmp_path, "s2", s1, None)
    s3 = write_stage(tmp_path, "s3", s2, None)
    assert stage_name(str(s3)) == "s3"
    history = stage_history(str(s3), result("s3", 18.0))
    assert [h["stage"] for h in history] == ["s1", "s3"]


def test_plot_and_mlflow_logging(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("eval-test", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(exp).info.run_id
    stages = [result("s1", 14.0), result("s2", 18.0)]
    plot = report.plot_stages(stages, tmp_path / report.PLOT_NAME)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report.log_to_mlflow(stages[-1], run_id, uri, plot)
    data = client.get_run(run_id).data.metrics
    assert data["eval/psnr"] == 18.0 and data["eval/val_loss_k2"] == 0.4
    assert "eval/digit_consistency" not in data  # NaN is not logged
    names = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert names == {"eval/eval.json", f"eval/{report.PLOT_NAME}"}
    logged = json.loads((tmp_path / "artifacts" / run_id / "artifacts" / "eval" / "eval.json").read_text())
    assert logged["metrics"]["psnr"] == 18.0


def test_quality_figures_hold_every_key_with_null_where_unmeasured():
    evaluated = result("s2", 18.0)
    evaluated["metrics"].update(psnr_2cond=15.0, eval_seconds=12.5, videos=32.0)
    evaluated["contact_sheet"] = "/x/s2/export/eval_sheet.png"
    quality = report.quality_figures(evaluated)
    assert set(report.QUALITY_KEYS) <= set(quality)
    for key in ("psnr_2cond", "psnr_copy_last_2cond", "ssim_2cond", "ssim_copy_last_2cond", "digit_consistency",
                "digit_consistency_gt", "dynamics", "dynamics_gt", "dynamics_2cond", "dynamics_gt_2cond",
                "classifier_accuracy_gt", "videos", "vae_psnr",
                "seconds"):
        assert key in quality, key
    assert quality["psnr_2cond"] == 15.0 and quality["seconds"] == 12.5 and quality["videos"] == 32.0
    assert quality["digit_consistency"] is None and quality["ssim_2cond"] is None  # NaN, and not measured
    assert quality["contact_sheet"].endswith("eval_sheet.png")
    json.dumps(quality, allow_nan=False)


def test_an_actor_pool_that_takes_every_cpu_is_refused(monkeypatch):
    """Actors holding every CPU leave none for Ray Data's read tasks (the eval would wait forever)."""
    from videomar.errors import ConfigError
    from videomar.platform.evaluation import workers
    from videomar.platform.specs.base import ResourcesSection

    monkeypatch.setattr(workers, "cluster_cpus", lambda: 2.0)
    with pytest.raises(ConfigError, match=r"2 workers x cpus_per_worker=1 take all 2 CPUs.*resources.workers"):
        workers.check_pool(ResourcesSection(workers=2))
    workers.check_pool(ResourcesSection(workers=2, cpus_per_worker=0.5))
