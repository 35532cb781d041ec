"""MLflow tracking of curriculum stages: a parent run per curriculum, a child run per stage.

The driver creates (or finds again, when a stage is re-run) the runs and logs what it knows
before training: params (the flattened spec, secrets redacted), the spec file, the dataset
manifest as an input. Inside the trainer only rank 0 logs (metrics, sample videos), through a
``StageLogger`` that addresses the child run by id. The driver logs the export and ends the run.

Tracking URI: the spec's ``mlflow.tracking_uri``, else MLFLOW_TRACKING_URI, else a sqlite store in
the work dir. Experiments created here get an absolute artifact location under the work dir when
the store is local, because MLflow would otherwise put artifacts in the process's cwd (a Ray
worker's temp dir).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

TAG_CURRICULUM = "videomar.curriculum"
TAG_STAGE = "videomar.stage"
TAG_ROLE = "videomar.role"
# MLflow 3's UI opens an experiment of this kind on its runs, one without a kind on GenAI traces.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
REDACTED = "***"
# Keys whose values are secrets wherever they appear in a spec.
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|access_key|api_key|private)", re.I)
# MLflow rejects longer param values.
_MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class TrackingTarget:
    tracking_uri: str
    experiment: str
    artifact_location: str | None  # absolute; set only for a local store


def resolve_target(uri: str | None, experiment: str, workdir: str) -> TrackingTarget:
    """Where a stage logs: spec URI, else MLFLOW_TRACKING_URI, else sqlite in ``workdir``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    local_dir = Path(workdir).resolve() if "://" not in workdir else Path("runs").resolve()
    if not uri:
        uri = f"sqlite:///{local_dir / 'mlflow.db'}"
    artifacts = None
    if not uri.startswith(("http://", "https://", "databricks")):
        artifacts = str(local_dir / "mlartifacts" / experiment)
    return TrackingTarget(tracking_uri=uri, experiment=experiment, artifact_location=artifacts)


def redact(params: dict[str, Any]) -> dict[str, str]:
    """Secrets out: values under secret-looking keys, and passwords inside URIs."""
    out = {}
    for key, value in params.items():
        leaf = key.rsplit(".", 1)[-1]
        text = REDACTED if _SECRET_KEY.search(leaf) else _redact_uri(str(value))
        out[key] = text[:_MAX_PARAM_CHARS]
    return out


def _redact_uri(text: str) -> str:
    if "://" not in text or "@" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None and parts.username is None:
        return text
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists stay whole values."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def _client(target: TrackingTarget):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=target.tracking_uri)


def experiment_id(target: TrackingTarget) -> str:
    """The experiment's id, created if missing, marked as model training so MLflow 3's UI opens on
    its runs (not on the GenAI overview of traces)."""
    client = _client(target)
    found = client.get_experiment_by_name(target.experiment)
    if found is not None:
        if found.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND:
            client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        return found.experiment_id
    if target.artifact_location:
        Path(target.artifact_location).mkdir(parents=True, exist_ok=True)
    try:
        return client.create_experiment(target.experiment, artifact_location=target.artifact_location,
                                        tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
    except Exception:
        # Another stage created it between our lookup and our create.
        found = client.get_experiment_by_name(target.experiment)
        if found is None:
            raise
        return found.experiment_id


def _find_run(client, exp_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=query, max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


@dataclass(frozen=True)
class StageRuns:
    target: TrackingTarget
    parent_id: str
    run_id: str  # the stage's child run
    resumed: bool  # the child run existed already (the stage is being re-run)


def open_stage(target: TrackingTarget, curriculum: str, stage: str) -> StageRuns:
    """Find or create the curriculum's parent run and the stage's child run under it."""
    client = _client(target)
    exp_id = experiment_id(target)
    parent_tags = {TAG_CURRICULUM: curriculum, TAG_ROLE: "curriculum"}
    parent = _find_run(client, exp_id, parent_tags)
    if parent is None:
        parent = client.create_run(exp_id, tags=parent_tags, run_name=curriculum).info.run_id
    else:  # a later stage (or a re-run) re-opens the curriculum
        client.update_run(parent, status="RUNNING")
    stage_tags = {TAG_CURRICULUM: curriculum, TAG_STAGE: stage, TAG_ROLE: "stage", "mlflow.parentRunId": parent}
    child = _find_run(client, exp_id, stage_tags)
    resumed = child is not None
    if child is None:
        child = client.create_run(exp_id, tags=stage_tags, run_name=stage).info.run_id
    else:
        client.update_run(child, status="RUNNING")
    return StageRuns(target=target, parent_id=parent, run_id=child, resumed=resumed)


def log_stage_inputs(runs: StageRuns, params: dict[str, Any], spec_path: str, manifest_uri: str,
                     manifest_digest: str) -> None:
    """Params (first time only: MLflow refuses changing a param), the spec, the dataset input."""
    from mlflow.entities import DatasetInput, InputTag, Param

    client = _client(runs.target)
    if not runs.resumed:
        items = [Param(k, v) for k, v in sorted(redact(flatten(params)).items())]
        for start in range(0, len(items), 100):  # MLflow's batch limit on params
            client.log_batch(runs.run_id, params=items[start:start + 100])
    client.log_artifact(runs.run_id, spec_path)
    dataset = _manifest_dataset(manifest_uri, manifest_digest)
    client.log_inputs(runs.run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                 tags=[InputTag("mlflow.data.context", "train")])])


def _manifest_dataset(manifest_uri: str, digest: str):
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # a local path matches two equivalent local source kinds
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(manifest_uri if "://" in manifest_uri else str(Path(manifest_uri).resolve()))
    return MetaDataset(source=source, name=Path(manifest_uri).parent.name or "latents", digest=digest[:36])


def close_stage(runs: StageRuns, export_dir: str | None, ok: bool) -> None:
    client = _client(runs.target)
    if ok and export_dir:
        client.log_artifacts(runs.run_id, export_dir, artifact_path="export")
    status = "FINISHED" if ok else "FAILED"
    client.set_terminated(runs.run_id, status=status)
    client.set_terminated(runs.parent_id, status=status)  # the curriculum's run: its latest stage's status


class StageLogger:
    """Rank 0's handle on the stage's child run; picklable (the client is made on first use)."""

    def __init__(self, target: TrackingTarget, run_id: str):
        self.target, self.run_id = target, run_id
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = _client(self.target)
        return self._client

    def __getstate__(self):
        return {"target": self.target, "run_id": self.run_id, "_client": None}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path=artifact_path)
