"""The eval job: measure a stage export on the held-out clips of its latent dataset.

``evaluate_export`` is the one entry point; the ``kind: eval`` spec and the training job (at the
end of every stage) both call it. It

1. reads the held-out clips (``split="val"``) of the bucket from the latent dataset and takes the
   first ones by name (``clip_names``);
2. on a Ray Data actor pool (``resources.workers`` actors, each holding the export on its device):
   the teacher-forced validation loss for every target frame index k on ``loss_clips`` clips
   (posterior means as the clean latents, seeded masks and timesteps); and on ``videos`` clips:
   the ground-truth pixels decoded from the source videos, continuations from the first
   ``cond_frames`` and ``motion_cond_frames`` latent frames with the KV-cached sampler, and
   per-clip figures;
3. combines them: PSNR and SSIM of the generated frames (copy-the-last-frame baseline beside
   them), digit consistency and dynamics (ground truth beside them; dynamics from both
   conditions), the digit classifier's accuracy on the ground truth, VAE reconstruction
   PSNR/SSIM, FVD;
4. writes ``eval.json`` and the contact sheet (condition | generated | ground truth, the first
   ``sheet_videos`` clips by name) next to the export, draws the per-stage plot over the chain of
   exports this stage was initialised from, and logs them and the metrics to MLflow when a run
   is given.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from videomar.artifacts import storage
from videomar.artifacts.bucket import Bucket
from videomar.artifacts.export import read_export_config
from videomar.artifacts.layout import SPEC_FILE
from videomar.data_pipelines.reader import read_bucket
from videomar.platform import console
from videomar.platform.evaluation import report
from videomar.platform.evaluation.clips import combine_losses, combine_quality
from videomar.platform.evaluation.sheet import sheet_png
from videomar.platform.evaluation.workers import LossWorker, QualityWorker, clip_key, run_pool, sheet_clips
from videomar.platform.specs.base import ResourcesSection
from videomar.platform.specs.eval import EvalOptions
from videomar.platform.tracking import TAG_ROLE, TAG_STAGE, experiment_id, resolve_target


def evaluate_export(
    export_uri: str,
    manifest_uri: str,
    bucket: Any = None,
    *,
    options: EvalOptions | None = None,
    resources: ResourcesSection | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate a stage export on the held-out clips of ``manifest_uri``; see the module docstring.

    Needs a connected Ray. ``bucket``: (frames, height, width) in pixels, a {frames, height,
    width} dict or a BucketSection; None = the bucket the export was trained on. ``options``:
    EvalOptions (its defaults if None). ``run_id``/``tracking_uri``: an MLflow run (the stage's)
    to log the metrics (as ``eval/<name>``), ``eval.json`` and the per-stage plot into; None logs
    nothing. Returns the result also written to ``<export>/eval.json``: ``stage``, ``export``,
    ``bucket``, ``metrics`` (flat name -> float, NaN where undefined), ``val_loss_by_frame``,
    ``feature_extractor`` and ``contact_sheet`` (its URI, None when ``sheet_videos`` is 0).
    """
    options = options or EvalOptions()
    resources = resources or ResourcesSection()
    started = time.monotonic()
    config = read_export_config(export_uri)
    bucket = Bucket.of(bucket if bucket is not None else config["bucket"])
    held_out = read_bucket(manifest_uri, bucket, split="val")
    names = clip_names(held_out)  # read once: every pick below is a prefix of it
    losses = run_pool(only_clips(held_out, names[:options.loss_clips]), LossWorker,
                      (export_uri, options.model_dump()), options, resources)
    if not losses:
        frames, height, width = bucket
        raise ValueError(
            f"data.manifest: {manifest_uri} has no held-out (split 'val') clips in bucket "
            f"{frames}x{height}x{width}; precompute it with a validation fraction above 0"
        )
    videos = only_clips(held_out, names[:options.videos])
    sheet_keys = names[:options.videos][:options.sheet_videos]
    quality = run_pool(videos, QualityWorker, (export_uri, options.model_dump(), bucket, sheet_keys), options,
                       resources)
    val_loss, by_frame = combine_losses(losses["loss"])
    metrics = {"val_loss": val_loss, **combine_quality(quality, options.motion_cond_frames)}
    metrics["videos"] = float(len(quality["psnr"]))
    metrics["source_videos"] = float(len(set(quality["source"].tolist())))
    metrics["loss_clips"] = float(len(losses["loss"]))
    metrics["eval_seconds"] = time.monotonic() - started
    result = {
        "stage": stage_name(export_uri),
        "export": str(export_uri),
        "bucket": list(bucket),
        "metrics": metrics,
        "val_loss_by_frame": by_frame,
        "feature_extractor": str(quality["feature_extractor"][0]),
        "options": options.model_dump(),
        "contact_sheet": None,
    }
    png = contact_sheet(quality)
    if png is not None:
        result["contact_sheet"] = report.write_sheet(export_uri, png)
    report.write_eval_json(export_uri, result)
    if run_id:
        with tempfile.TemporaryDirectory(prefix="videomar-eval-") as tmp:
            plot = report.plot_stages(stage_history(export_uri, result), Path(tmp) / report.PLOT_NAME)
            artifacts = [plot]
            if png is not None:
                artifacts.append(Path(tmp) / report.SHEET_NAME)
                artifacts[-1].write_bytes(png)
            report.log_to_mlflow(result, run_id, tracking_uri, *artifacts)
    return result


def clip_names(dataset) -> list[str]:
    """The names of every clip of ``dataset``, sorted. Evaluations take the first ones: the same
    clips on every evaluation of a dataset and on every precompute of the same videos, whatever
    order its shards were written or are read in (``limit`` took the first rows read, and two
    precomputes of the same videos were measured on different clips)."""
    rows = dataset.select_columns(["source", "clip_index"]).take_all()
    return sorted(clip_key(r["source"], r["clip_index"]) for r in rows)


def only_clips(dataset, names: list[str]):
    """The clips of ``dataset`` named in ``names``."""
    keep = set(names)
    return dataset.filter(lambda row: clip_key(row["source"], row["clip_index"]) in keep)


def contact_sheet(quality: dict[str, Any]) -> bytes | None:
    """The PNG of the clips the workers returned frames for, in name order; None if none."""
    clips = [frames for _, frames in sheet_clips(quality)]
    return sheet_png(clips, int(quality["cond_pixels"][0])) if clips else None


def _export_spec(export_uri: str) -> dict[str, Any]:
    import yaml

    uri = storage.join(export_uri, SPEC_FILE)
    return yaml.safe_load(storage.read_bytes(uri)) if storage.exists(uri) else {}


def stage_name(export_uri: str) -> str:
    """The name of the stage that wrote an export (its spec's ``name``), else the folder the
    export sits in (a stage exports to ``<storage>/<name>/export`` by default)."""
    name = _export_spec(export_uri).get("name")
    if name:
        return str(name)
    path = Path(str(export_uri).rstrip("/"))
    return path.parent.name if path.name == "export" and path.parent.name else path.name


def stage_history(export_uri: str, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Eval results of the stages this export descends from (following ``init_from``), oldest
    first, ending with ``current``. Stages never evaluated are left out."""
    chain: list[dict[str, Any]] = []
    seen = {str(export_uri)}
    uri = ((_export_spec(export_uri).get("init_from") or {}).get("export"))
    while uri and str(uri) not in seen:
        seen.add(str(uri))
        try:
            found = report.read_eval_json(uri)
            parent = (_export_spec(uri).get("init_from") or {}).get("export")
        except (OSError, ValueError):
            break
        if found is not None:
            chain.append(found)
        uri = parent
    return list(reversed(chain)) + [current]


def stage_run(spec, stage: str) -> tuple[str, str, bool]:
    """(run id, tracking URI, created) of the MLflow run an eval spec logs into: ``mlflow.run_id``,
    else the latest run tagged as this stage's training run, else a new run ``eval-<stage>``.

    With no tracking URI in the spec or MLFLOW_TRACKING_URI, the store is the sqlite file a stage
    uses by default: ``<storage>/mlflow.db`` for an export at ``<storage>/<stage>/export``.
    """
    from mlflow.tracking import MlflowClient

    workdir = "runs" if storage.is_s3(spec.export) else str(Path(spec.export).resolve().parent.parent)
    target = resolve_target(spec.mlflow.tracking_uri, spec.mlflow.experiment, workdir)
    if spec.mlflow.run_id:
        return spec.mlflow.run_id, target.tracking_uri, False
    client = MlflowClient(tracking_uri=target.tracking_uri)
    exp_id = experiment_id(target)
    found = client.search_runs([exp_id], filter_string=f"tags.`{TAG_STAGE}` = '{stage}' and tags.`{TAG_ROLE}` = 'stage'",
                               max_results=1, order_by=["attributes.start_time DESC"])
    if found:
        return found[0].info.run_id, target.tracking_uri, False
    run = client.create_run(exp_id, tags={TAG_STAGE: stage, TAG_ROLE: "eval"}, run_name=f"eval-{stage}")
    return run.info.run_id, target.tracking_uri, True


def run_eval_spec(spec) -> int:
    """``videomar run eval.yaml``: evaluate on the connected Ray, log to the stage's MLflow run,
    print the metrics as one JSON line; exit status 0."""
    import json

    from mlflow.tracking import MlflowClient

    run_id, tracking_uri, created = stage_run(spec, stage_name(spec.export))
    ok = False
    try:
        result = evaluate_export(spec.export, spec.data.manifest, spec.data.bucket, options=spec.options,
                                 resources=spec.resources, run_id=run_id, tracking_uri=tracking_uri)
        ok = True
    finally:
        if created:
            MlflowClient(tracking_uri=tracking_uri).set_terminated(run_id, status="FINISHED" if ok else "FAILED")
    console.say(json.dumps({"stage": result["stage"], "run_id": run_id, **result["metrics"]}, sort_keys=True))
    return 0
