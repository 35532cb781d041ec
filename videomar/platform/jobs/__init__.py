"""The jobs registry: one module per kind of job spec, each with the same three parts.

    Spec              the pydantic schema (videomar.platform.specs.<kind>)
    preflight(spec)   every check that needs no Ray: storage reachable, inputs present and
                      compatible; raises a UserError naming the field or path at fault
    run(spec) -> int  the job itself on the connected Ray; the process exit status

``KINDS`` serves every verb that takes a spec: ``run``, ``validate``, ``submit`` and
``curriculum``. ``execute(spec)`` is what ``videomar run`` does: preflight, then Ray, then run.
A kind's module is imported when a spec of that kind is met, so a verb loads only what it uses.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import yaml

from videomar.errors import SpecError
from videomar.platform.specs.base import JobSpec

KINDS: dict[str, str] = {
    "precompute": "videomar.platform.jobs.precompute",
    "train-vae": "videomar.platform.jobs.train_vae",
    "train": "videomar.platform.jobs.train",
    "eval": "videomar.platform.jobs.eval",
    "generate": "videomar.platform.jobs.generate",
    "serve": "videomar.platform.jobs.serve",
}


def job(kind: str) -> ModuleType:
    """The module of a kind of job (it has ``Spec``, ``preflight`` and ``run``)."""
    if kind not in KINDS:
        raise SpecError(f"kind: unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
    return importlib.import_module(KINDS[kind])


def spec_class(kind: str) -> type[JobSpec]:
    return job(kind).Spec


def parse_spec(data: Any, source: str = "<spec>") -> JobSpec:
    """Validate a mapping (already parsed YAML) into the JobSpec of its kind."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a YAML mapping with a 'kind', got {type(data).__name__}")
    if "kind" not in data:
        raise SpecError(f"{source}: kind: missing; expected one of {', '.join(sorted(KINDS))}")
    try:
        cls = spec_class(str(data["kind"]))
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None
    try:
        spec = cls.model_validate(data)
    except pydantic.ValidationError as err:
        raise SpecError(f"{source}: invalid {data['kind']} spec: {format_validation_error(err)}") from None
    return spec.with_file(source)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; SpecError names the file (and the line) when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read spec: {err.strerror or err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None


def read_spec_data(path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A spec file's mapping with its ``extends:`` chain merged in: ``extends: FILE`` (relative to
    the spec's folder) names a file of shared settings; the spec's own values win, and sections
    merge key by key. The result is what gets validated (and shipped to a cluster)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job spec must be a YAML mapping with a 'kind', got {type(data).__name__}")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base_path = (path.parent / str(base_name)).resolve()
    if base_path in seen:
        raise SpecError(f"{path}: extends: {base_name} extends {path} again (a loop)")
    if not base_path.is_file():
        raise SpecError(f"{path}: extends: {base_path} does not exist")
    return merge(read_spec_data(base_path, (*seen, path.resolve())), data)


def merge(base: dict, override: dict) -> dict:
    """``base`` updated by ``override``, mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate one YAML job spec; SpecError names the file and the field at fault."""
    return parse_spec(read_spec_data(path), str(path))


def format_validation_error(err: pydantic.ValidationError) -> str:
    """pydantic's errors as one line: ``field: message; field: message``."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the spec reference in README.md)"
        msg = msg.removeprefix("Value error, ")
        parts.append(msg if field == "<root>" else f"{field}: {msg}")
    return "; ".join(parts)


def preflight(spec: JobSpec) -> Any:
    """The kind's checks that need no Ray; a SpecError names the spec file and the field."""
    try:
        return job(spec.kind).preflight(spec)
    except SpecError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise SpecError(f"{spec.file}: {err}") from None


def use_credentials_file(spec: JobSpec) -> None:
    """Point this process, and through storage.s3_env the Ray workers, at the spec's AWS
    credentials file: secrets then never travel in a runtime_env (Ray's state API shows those)."""
    if spec.s3_credentials_file:
        path = os.path.abspath(os.path.expanduser(spec.s3_credentials_file))
        if not os.path.isfile(path):
            raise SpecError(f"{spec.file}: s3_credentials_file: {path} is not a file")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = path


def execute(spec: JobSpec) -> int:
    """Preflight, then Ray (RAY_ADDRESS's cluster, else an in-process one), then the job; from the
    CLI, inside a console session (a live view; Ray's output in a log file under the cwd)."""
    from videomar.platform import console
    from videomar.platform.envfile import apply_env_defaults
    from videomar.ray_env import connected, ensure_ray

    use_credentials_file(spec)
    checked = preflight(spec)
    with console.session(spec.name or spec.kind):
        # Before Ray is imported by ensure_ray: the auth settings are read when it connects.
        apply_env_defaults()
        if connected():
            ensure_ray(min_cpus=spec.min_cluster_cpus())
        else:
            with console.phase(f"start Ray ({os.environ.get('RAY_ADDRESS') or 'in-process'})"):
                ensure_ray(min_cpus=spec.min_cluster_cpus())
        status = job(spec.kind).run(spec, checked)
        if status != 0:
            console.failed(f"{spec.kind} {spec.name or spec.file} ended with exit status {status}")
        return status
