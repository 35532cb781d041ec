"""The env file that ``videomar up`` writes: ``NAME=value`` lines giving the addresses of the local
Ray head, MLflow server and S3 server. Other commands take their defaults from it, and a shell can
``source`` it (``set -a; . .videomar/env; set +a``).

Variables already set in the environment win over the file, so an explicit setting is never
overridden by a stale ``up``.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Mapping

from videomar.artifacts.storage import atomic_path

# Where ``videomar up`` keeps its state (env file, PIDs, logs) unless told otherwise.
DEFAULT_STATE_DIR = ".videomar"
ENV_FILE_NAME = "env"
# Set this to use an env file elsewhere than ./.videomar/env.
ENV_FILE_VARIABLE = "VIDEOMAR_ENV_FILE"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_file_path() -> Path:
    """The env file the commands read: $VIDEOMAR_ENV_FILE, else ./.videomar/env."""
    explicit = os.environ.get(ENV_FILE_VARIABLE)
    return Path(explicit) if explicit else Path(DEFAULT_STATE_DIR) / ENV_FILE_NAME


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write atomically, readable by the owner only (it can name a token file and S3 keys)."""
    for name in values:
        if not _NAME.match(name):
            raise ValueError(f"env file {path}: {name!r} is not a valid variable name")
    text = "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items())
    with atomic_path(path) as tmp:  # created 0600, like every temporary file of atomic_path
        tmp.write_text(text)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``NAME=value`` lines (values shell-quoted); blank lines and ``#`` comments skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, raw = line.partition("=")
        if not sep or not _NAME.match(name):
            raise ValueError(f"{path}, line {number}: expected NAME=value")
        parts = shlex.split(raw)
        values[name] = parts[0] if parts else ""
    return values


def env_defaults(path: Path | None = None) -> dict[str, str]:
    """The env file's values, or nothing if there is no env file."""
    path = path or env_file_path()
    return read_env_file(path) if path.is_file() else {}


def apply_env_defaults(path: Path | None = None) -> dict[str, str]:
    """Copy the env file's variables into os.environ where not already set; returns those set."""
    applied = {k: v for k, v in env_defaults(path).items() if k not in os.environ}
    os.environ.update(applied)
    return applied
