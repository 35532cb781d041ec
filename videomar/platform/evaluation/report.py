"""Where eval results go: ``eval.json`` and the contact sheet next to the export, a PNG of metrics
per stage, the stage's MLflow run, and the quality summary (``quality_figures``) that the
quickstart writes as ``quality.json`` and ``bench.quality`` prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from videomar.artifacts import storage
from videomar.platform.evaluation.clips import CONTINUATION_KEYS, motion_key
from videomar.platform.specs.eval import MOTION_COND_FRAMES

EVAL_JSON = "eval.json"
PLOT_NAME = "eval_by_stage.png"
SHEET_NAME = "eval_sheet.png"
METRIC_PREFIX = "eval/"


def given(*keys: str) -> tuple[str, ...]:
    """The names of ``keys`` measured with MOTION_COND_FRAMES latent frames given."""
    return tuple(motion_key(k, MOTION_COND_FRAMES) for k in keys)


MOTION = given(*CONTINUATION_KEYS)  # psnr_2cond, ...
GIVEN = f"{MOTION_COND_FRAMES} latent frames given"

# Panels of the per-stage plot: title -> metrics drawn in it (model first, reference after).
PANELS: dict[str, tuple[str, ...]] = {
    "validation loss": ("val_loss",),
    "PSNR (dB)": ("psnr", "psnr_copy_last"),
    "SSIM": ("ssim", "ssim_copy_last"),
    f"PSNR (dB), {GIVEN}": given("psnr", "psnr_copy_last"),
    f"SSIM, {GIVEN}": given("ssim", "ssim_copy_last"),
    f"dynamics, {GIVEN}": given("dynamics", "dynamics_gt"),
    "digit consistency": ("digit_consistency", "digit_consistency_gt"),
    "dynamics": ("dynamics", "dynamics_gt"),
    "VAE reconstruction PSNR (dB)": ("vae_psnr",),
    "FVD": ("fvd",),
}

# The quality summary: the eval metric each key is read from. The continuation figures are those
# with MOTION_COND_FRAMES latent frames given (the motion is visible; dynamics_2cond among them);
# digit consistency and dynamics are those with ``cond_frames`` given (one in the quickstart).
QUALITY_KEYS: dict[str, str] = {
    **{k: k for k in MOTION},
    "digit_consistency": "digit_consistency",
    "digit_consistency_gt": "digit_consistency_gt",
    "dynamics": "dynamics",
    "dynamics_gt": "dynamics_gt",
    "classifier_accuracy_gt": "classifier_accuracy_gt",
    "videos": "videos",
    "source_videos": "source_videos",
    "vae_psnr": "vae_psnr",
    "seconds": "eval_seconds",
}


def quality_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The quality summary of an eval result: ``QUALITY_KEYS`` (null where not measured), the
    contact sheet's location and the stage."""
    metrics = result["metrics"]
    out = {key: metrics.get(name) for key, name in QUALITY_KEYS.items()}
    out.update(contact_sheet=result.get("contact_sheet"), stage=result.get("stage"))
    return _finite_or_none(out)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_eval_json(export_uri: str, result: dict[str, Any]) -> str:
    """Write ``result`` as ``<export>/eval.json`` (atomically; NaN and inf become null)."""
    uri = storage.join(export_uri, EVAL_JSON)
    text = json.dumps(_finite_or_none(result), indent=2, sort_keys=True, allow_nan=False)
    storage.write_bytes_atomic(uri, text.encode())
    return uri


def write_sheet(export_uri: str, png: bytes) -> str:
    """Write the contact sheet as ``<export>/eval_sheet.png`` (atomically); returns its URI."""
    uri = storage.join(export_uri, SHEET_NAME)
    storage.write_bytes_atomic(uri, png)
    return uri


def read_eval_json(export_uri: str) -> dict[str, Any] | None:
    """The eval result stored next to an export, or None if it has not been evaluated."""
    uri = storage.join(export_uri, EVAL_JSON)
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_bytes(uri))


def plot_stages(stages: list[dict[str, Any]], path: str | Path) -> Path:
    """A PNG of metrics per stage: validation loss by target frame index (one line per stage),
    then one panel per entry of ``PANELS`` with stages on the x axis.

    ``stages``: eval results in curriculum order, each with ``stage``, ``metrics`` and
    ``val_loss_by_frame`` (as ``evaluate_export`` returns them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["stage"] for s in stages]
    columns = (len(PANELS) + 2) // 2
    fig, grid = plt.subplots(2, columns, figsize=(3.4 * columns, 6.4))
    axes = grid.flatten()
    ax = axes[0]
    for s in stages:
        by_frame = s.get("val_loss_by_frame") or {}
        ks = sorted(by_frame, key=int)
        ax.plot([int(k) for k in ks], [by_frame[k] for k in ks], marker="o", label=s["stage"])
    ax.set_title("val loss by target frame")
    ax.set_xlabel("latent frame index")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    for ax, (title, keys) in zip(axes[1:], PANELS.items()):
        for key in keys:
            values = [s["metrics"].get(key) for s in stages]
            ax.plot(range(len(stages)), [math.nan if v is None else v for v in values], marker="o", label=key)
        ax.set_title(title)
        ax.set_xticks(range(len(stages)), names, rotation=30, fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_to_mlflow(result: dict[str, Any], run_id: str, tracking_uri: str | None, *artifacts: Path) -> None:
    """Log the finite metrics (prefixed ``eval/``), the result JSON and the ``artifacts`` (the plot,
    the contact sheet) to an existing run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    metrics = dict(result["metrics"])
    metrics.update({f"val_loss_k{k}": v for k, v in result.get("val_loss_by_frame", {}).items()})
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)) and math.isfinite(value):
            client.log_metric(run_id, METRIC_PREFIX + key, float(value))
    client.log_dict(run_id, _finite_or_none(result), f"eval/{EVAL_JSON}")
    for path in artifacts:
        client.log_artifact(run_id, str(path), artifact_path="eval")
