"""A curriculum: ``train`` stages submitted one after another to a Ray cluster.

Every stage is validated before the first is submitted. Each stage after the first starts from
the previous stage's export: its ``init_from.export`` is set to that export (keeping the stage's own
``init_from.carry``), and it is submitted only once the previous job SUCCEEDED. A stage that
ends any other way stops the chain, and the result says which stage and why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from videomar.errors import SpecError
from videomar.platform.jobs import load_spec, parse_spec, read_spec_data
from videomar.platform.specs.base import JobSpec
from videomar.platform.submission import JobsClient, JobState, load_spec_text, watch

# Lines of a failed stage's log quoted in the reason.
FAILED_LOG_LINES = 30


@dataclass(frozen=True)
class Stage:
    """One stage as written: its file, the validated spec and the YAML mapping it came from."""

    path: str
    spec: JobSpec
    data: dict

    @property
    def export_uri(self) -> str:
        return self.spec.export_uri


@dataclass
class StageResult:
    path: str
    job_id: str
    state: JobState
    init_from: str | None


@dataclass
class CurriculumResult:
    stages: list[StageResult] = field(default_factory=list)
    failed: str | None = None  # why the chain stopped; None when every stage succeeded

    @property
    def ok(self) -> bool:
        return self.failed is None


def load_stages(paths: list[str]) -> list[Stage]:
    """Validate every stage before anything is submitted; SpecError names the file and field."""
    if not paths:
        raise SpecError("curriculum: name at least one stage spec")
    stages = []
    for path in paths:
        spec = load_spec(path)
        if spec.kind != "train":
            raise SpecError(f"{path}: kind: a curriculum stage must be kind 'train', got {spec.kind!r}")
        _require_shared_paths(path, spec)
        stages.append(Stage(path=path, spec=spec, data=read_spec_data(path)))
    _require_distinct_exports(stages)
    return stages


def _require_shared_paths(path: str, spec: JobSpec) -> None:
    """Each stage runs as its own job in its own working directory, so a relative local path
    would point somewhere different for every stage; exports must be found by the next one."""
    for name, value in (("storage", spec.storage), ("export", spec.export)):
        if value and "://" not in value and not Path(value).is_absolute():
            raise SpecError(
                f"{path}: {name}: {value!r} is a relative path; on a cluster each stage runs in its "
                "own working directory, so use an absolute path or an s3:// URI"
            )


def _require_distinct_exports(stages: list[Stage]) -> None:
    seen: dict[str, str] = {}
    for stage in stages:
        uri = stage.export_uri
        if uri in seen:
            raise SpecError(
                f"{stage.path}: export: {uri} is also the export of {seen[uri]}; give the stages distinct names"
            )
        seen[uri] = stage.path


def wire(stage: Stage, previous_export: str) -> tuple[JobSpec, str]:
    """The stage with ``init_from.export`` set to the previous export; returns the spec and its YAML."""
    data = copy.deepcopy(stage.data)
    init = dict(data.get("init_from") or {})
    init.pop("checkpoint", None)
    init["export"] = previous_export
    data["init_from"] = init
    spec = parse_spec(data, f"{stage.path} (init_from wired to {previous_export})")
    return spec, yaml.safe_dump(data, sort_keys=False)


def run_curriculum(
    client: JobsClient,
    stages: list[Stage],
    report: Callable[[str], None] = print,
    poll_s: float = 1.0,
) -> CurriculumResult:
    """Submit the stages in order, each after the previous SUCCEEDED; stop at the first that did not."""
    result = CurriculumResult()
    previous: Stage | None = None
    for number, stage in enumerate(stages, start=1):
        init_from = previous.export_uri if previous else None
        if init_from:
            spec, text = wire(stage, init_from)
        else:
            spec, text = load_spec_text(stage.path)
        job_id = client.submit(spec, text, Path(stage.path).name)
        report(f"stage {number}/{len(stages)} {stage.path}: submitted as {job_id}"
               + (f", starting from {init_from}" if init_from else ""))
        state = _wait_or_stop(client, job_id, poll_s, report, f"stage {number}/{len(stages)} {job_id}")
        result.stages.append(StageResult(stage.path, job_id, state, init_from))
        report(f"stage {number}/{len(stages)} {stage.path}: {state.status}")
        if state.status != "SUCCEEDED":
            result.failed = _failure_reason(client, stage, state, stages[number:])
            return result
        previous = stage
    return result


def _wait_or_stop(client: JobsClient, job_id: str, poll_s: float, report: Callable[[str], None],
                  title: str) -> JobState:
    """Wait for the job (a console row shows it); on Ctrl-C stop it first, so no stage is left
    running unseen."""
    try:
        return watch(client, job_id, title, poll_s=poll_s)
    except KeyboardInterrupt:
        client.stop(job_id)
        report(f"interrupted: asked {job_id} to stop")
        raise


def _failure_reason(client: JobsClient, stage: Stage, state: JobState, skipped: list[Stage]) -> str:
    lines = [f"stage {stage.path} (job {state.job_id}) ended {state.status}: {state.message.strip()}"]
    log_tail = client.logs(state.job_id).rstrip().splitlines()[-FAILED_LOG_LINES:]
    if log_tail:
        lines.append("last lines of its log:")
        lines.extend(f"  {line}" for line in log_tail)
    if skipped:
        lines.append("not submitted: " + ", ".join(s.path for s in skipped))
    return "\n".join(lines)
