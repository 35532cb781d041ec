"""Submitting job specs to a Ray cluster through the Ray Jobs API.

A submitted job carries its spec and this package in its runtime_env (the spec as the job's
working directory, the package as a py_module, so a cluster needs only Ray and the pinned
dependencies installed) and runs ``videomar run SPEC.yaml`` there.

The cluster is named by ``--address`` (the dashboard URL, e.g. http://127.0.0.1:8265), else by
RAY_API_SERVER_ADDRESS or RAY_ADDRESS, else by the env file ``videomar up`` wrote. Ray's token
authentication is honoured: a token from ``--token-file``, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
or, with RAY_AUTH_MODE=token, ~/.ray/auth_token is sent as a bearer header. The token is never
printed or put in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import yaml

from videomar.platform.envfile import env_defaults
from videomar.platform.jobs import parse_spec, read_spec_data
from videomar.platform.specs.base import JobSpec
from videomar.platform.tokens import read_token_file

# Variables that Ray's own client reads and that would override an explicit address.
ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"
# `videomar stop` (the Jobs API) sends SIGTERM, then SIGKILL after this many seconds: time for a
# serve job to shut Serve down (its actors would outlive a killed job) and a run to stop its workers.
STOP_WAIT_S = 30
# Files of the package that a cluster never needs.
PACKAGE_EXCLUDES = ["__pycache__", "*.pyc", "*.egg-info"]
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class SubmissionError(RuntimeError):
    """The cluster cannot be reached or refused a request; the message says which and why."""


class JobNotFoundError(SubmissionError):
    """No job with the given id exists on the cluster."""


@dataclass(frozen=True)
class JobState:
    """A job's status as the cluster reports it."""

    job_id: str
    status: str
    message: str
    error_type: str | None
    entrypoint: str
    metadata: Mapping[str, str]
    start_time: int | None
    end_time: int | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_details(cls, details) -> "JobState":
        return cls(
            job_id=details.submission_id or details.job_id or "",
            status=str(getattr(details.status, "value", details.status)),
            message=details.message or "",
            error_type=str(getattr(details.error_type, "value", details.error_type)) if details.error_type else None,
            entrypoint=details.entrypoint or "",
            metadata=dict(details.metadata or {}),
            start_time=details.start_time,
            end_time=details.end_time,
        )


def setting(name: str) -> str | None:
    """A variable from the environment, else from the env file of ``videomar up``."""
    return os.environ.get(name) or env_defaults().get(name) or None


def resolve_address(address: str | None) -> str:
    """The Jobs API address to use; SubmissionError when none is given anywhere or it is malformed."""
    if not address:
        # Anything set in the environment wins over everything in the env file.
        sources = (os.environ, env_defaults())
        address = next((src[name] for src in sources for name in ADDRESS_VARIABLES if src.get(name)), None)
    if not address:
        raise SubmissionError(
            "no Ray cluster address: pass --address http://HOST:8265 (the dashboard URL), set "
            "RAY_API_SERVER_ADDRESS, or start a local cluster with `videomar up`"
        )
    scheme, sep, rest = address.partition("://")
    if sep and scheme not in ("http", "https", "ray"):
        raise SubmissionError(f"--address {address!r}: unsupported scheme {scheme!r}; expected http://HOST:PORT")
    if sep and not rest:
        raise SubmissionError(f"--address {address!r}: no host given")
    return address


def auth_token(token_file: str | None = None) -> str | None:
    """The Ray auth token to send, or None when auth is off or no token is configured."""
    if token_file:
        return read_token_file(Path(token_file), "--token-file", SubmissionError)
    mode = (setting("RAY_AUTH_MODE") or "").lower()
    if mode == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = setting("RAY_AUTH_TOKEN_PATH")
    if path:
        return read_token_file(Path(path), "RAY_AUTH_TOKEN_PATH", SubmissionError)
    if mode == "token":
        if DEFAULT_TOKEN_PATH.is_file():
            return read_token_file(DEFAULT_TOKEN_PATH, "the default token file", SubmissionError)
        raise SubmissionError(
            "RAY_AUTH_MODE=token but no token found: pass --token-file, or set RAY_AUTH_TOKEN_PATH "
            f"or RAY_AUTH_TOKEN, or put the token in {DEFAULT_TOKEN_PATH}"
        )
    return None


@contextlib.contextmanager
def _without_address_variables():
    """Ray's client lets RAY_ADDRESS override the address it is given; hide it while connecting."""
    saved = {name: os.environ.pop(name) for name in ADDRESS_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def submission_id(spec: JobSpec) -> str:
    """A readable unique id: videomar-<name or kind>-<8 hex>."""
    base = re.sub(r"[^a-z0-9]+", "-", (spec.name or spec.kind).lower()).strip("-") or spec.kind
    return f"videomar-{base[:40]}-{uuid.uuid4().hex[:8]}"


def package_dir() -> Path:
    import videomar

    return Path(videomar.__file__).resolve().parent


def entrypoint(spec_file: str) -> str:
    return f"videomar run {shlex.quote(spec_file)}"


class JobsClient:
    """The Ray Jobs API of one cluster, with errors that name the address and the job."""

    def __init__(self, address: str | None = None, token_file: str | None = None):
        from ray.job_submission import JobSubmissionClient

        self.address = resolve_address(address)
        token = auth_token(token_file)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            with _without_address_variables():
                self._client = JobSubmissionClient(self.address, headers=headers)
        except Exception as err:  # Ray raises ConnectionError, AuthenticationError, RuntimeError, ValueError
            raise SubmissionError(self._explain(err, token is not None)) from None

    def _explain(self, err: Exception, sent_token: bool) -> str:
        text = str(err).split("\n")[0]
        if "Authentication" in type(err).__name__ or "401" in text or "403" in text:
            hint = "the token was refused" if sent_token else "the cluster requires a token (--token-file)"
            return f"Ray cluster at {self.address}: authentication failed: {hint}"
        if isinstance(err, ConnectionError):
            return f"cannot reach the Ray Jobs API at {self.address} (is the dashboard running there?)"
        return f"Ray cluster at {self.address}: {text}"

    def _call(self, job_id: str | None, fn, *args):
        try:
            return fn(*args)
        except Exception as err:
            text = str(err)
            if job_id and ("404" in text or "does not exist" in text):
                raise JobNotFoundError(
                    f"no job {job_id!r} on the Ray cluster at {self.address} (`videomar list` shows its jobs)"
                ) from None
            raise SubmissionError(self._explain(err, True)) from None

    def submit(self, spec: JobSpec, spec_text: str, spec_file: str, env_vars: Mapping[str, str] | None = None) -> str:
        """Submit a validated spec whose YAML text is ``spec_text``; returns the job id."""
        job_id = submission_id(spec)
        metadata = {"videomar_kind": spec.kind, "videomar_name": spec.name or "", "videomar_spec": spec_file}
        with tempfile.TemporaryDirectory(prefix="videomar-job-") as work:
            Path(work, spec_file).write_text(spec_text)
            runtime_env = {
                "working_dir": work,
                "py_modules": [str(package_dir())],
                "excludes": PACKAGE_EXCLUDES,
                # Unbuffered, so `videomar logs --follow` shows progress as it happens.
                "env_vars": {"PYTHONUNBUFFERED": "1", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S),
                             **dict(env_vars or {})},
            }
            self._call(
                None,
                lambda: self._client.submit_job(
                    entrypoint=entrypoint(spec_file), submission_id=job_id, runtime_env=runtime_env, metadata=metadata
                ),
            )
        return job_id

    def state(self, job_id: str) -> JobState:
        return JobState.from_details(self._call(job_id, self._client.get_job_info, job_id))

    def logs(self, job_id: str) -> str:
        return self._call(job_id, self._client.get_job_logs, job_id)

    def follow(self, job_id: str) -> Iterator[str]:
        """Log chunks as the job writes them, until it ends."""
        self.state(job_id)  # a clear error for an unknown id before streaming
        loop = asyncio.new_event_loop()
        stream = self._client.tail_job_logs(job_id)
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(stream.aclose())
            loop.close()

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; False if it had already ended."""
        self.state(job_id)
        return bool(self._call(job_id, self._client.stop_job, job_id))

    def list(self) -> list[JobState]:
        jobs = [JobState.from_details(d) for d in self._call(None, self._client.list_jobs)]
        return sorted(jobs, key=lambda j: j.start_time or 0)

    def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> JobState:
        """Poll until the job ends; SubmissionError if ``timeout_s`` passes first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            state = self.state(job_id)
            if state.terminal:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise SubmissionError(f"job {job_id} still {state.status} after {timeout_s:.0f} s")
            time.sleep(poll_s)


# Between two reads of a watched job's log (the whole log is fetched: not at every status poll).
LOG_READ_EVERY_S = 5.0


def watch(client: JobsClient, job_id: str, title: str, poll_s: float = 1.0) -> JobState:
    """Wait for the job's end with a console row: its status and the last line of its log (the
    job's own console: plain progress lines)."""
    from videomar.platform import console

    read_at = 0.0
    with console.phase(title) as row:
        while True:
            state = client.state(job_id)
            row.update(status=state.status)
            if time.monotonic() - read_at >= LOG_READ_EVERY_S or state.terminal:
                read_at = time.monotonic()
                lines = client.logs(job_id).strip().splitlines()
                row.update(log=lines[-1].strip() if lines else None)
            if state.terminal:
                return state
            time.sleep(poll_s)


def load_spec_text(path: str | Path) -> tuple[JobSpec, str]:
    """Read and validate a spec file; returns the spec and the text to ship: the file as written,
    or, when it ``extends:`` a base file, the merged spec (the cluster has only this one file)."""
    data = read_spec_data(path)
    text = Path(path).read_text()
    spec = parse_spec(data, str(path))
    if "extends" in (yaml.safe_load(text) or {}):
        text = f"# {Path(path).name} with its extends: chain merged in by videomar submit\n" + yaml.safe_dump(
            data, sort_keys=False)
    return spec, text
