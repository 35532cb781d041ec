"""Job specs: YAML files with a ``kind``, parsed into typed, validated objects.

Each kind's schema lives in its own module and is imported only when a spec of that kind is
loaded, so ``videomar validate`` stays fast and a broken optional area cannot break the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pydantic
import yaml

from videomar.platform.specs.base import JobSpec, SpecError

# kind -> "module:Class"; every module here defines one JobSpec subclass.
KINDS: dict[str, str] = {
    "precompute": "videomar.platform.specs.precompute:PrecomputeSpec",
    "train-vae": "videomar.platform.specs.train_vae:TrainVAESpec",
    "train": "videomar.platform.specs.train:TrainSpec",
    "eval": "videomar.platform.specs.eval:EvalSpec",
    "generate": "videomar.platform.specs.generate:GenerateSpec",
    "serve": "videomar.platform.specs.serve:ServeSpec",
}

__all__ = ["KINDS", "JobSpec", "SpecError", "load_spec", "parse_spec", "spec_class"]


def spec_class(kind: str) -> type[JobSpec]:
    if kind not in KINDS:
        raise SpecError(f"kind: unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


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
        raise SpecError(f"{source}: invalid {data['kind']} spec:\n{format_validation_error(err)}") from None
    return spec.with_source(source)


def load_spec(path: str | Path) -> JobSpec:
    """Read and validate one YAML job spec; SpecError names the file and the field at fault."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read spec: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return parse_spec(data, str(path))


def format_validation_error(err: pydantic.ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the spec reference in README.md)"
        lines.append(f"  - {field}: {msg}")
    return "\n".join(lines)
