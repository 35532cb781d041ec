"""The errors table: one row per input that could not be turned into clips, so every input is
accounted for. A row names the file, the pipeline stage, the error class and its message."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

from videomar.artifacts import storage

ERRORS_FILE = "errors.parquet"
STAGES = ("list", "decode", "encode", "write")


@dataclass(frozen=True)
class InputError:
    path: str
    stage: str  # one of STAGES
    error_class: str
    message: str

    @classmethod
    def from_exception(cls, path: str, stage: str, err: BaseException) -> "InputError":
        text = str(err).strip().splitlines()
        return cls(path=str(path), stage=stage, error_class=type(err).__name__,
                   message=(text[0] if text else type(err).__name__)[:500])


def write_errors(output: str, errors: list[InputError]) -> str:
    """Write the table as ``<output>/errors.parquet`` (atomically, empty when there are none);
    returns its URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: pa.array([getattr(e, name) for e in errors], pa.string())
               for name in ("path", "stage", "error_class", "message")}
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    uri = storage.join(output, ERRORS_FILE)
    storage.write_bytes_atomic(uri, buf.getvalue())
    return uri


def read_errors(output: str) -> list[InputError]:
    """The errors table of a dataset (empty when it has none)."""
    import pyarrow.parquet as pq

    uri = storage.join(output, ERRORS_FILE)
    if not storage.exists(uri):
        return []
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    return [InputError(**row) for row in table.to_pylist()]


def as_dicts(errors: list[InputError]) -> list[dict]:
    return [asdict(e) for e in errors]
