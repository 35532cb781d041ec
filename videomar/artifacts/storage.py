"""One way to read and write files whether they live on local disk or in S3.

A location is a local path or an ``s3://bucket/key`` URI. S3 goes through pyarrow's S3
filesystem; the endpoint comes from ``AWS_ENDPOINT_URL`` (for S3-compatible servers such as
SeaweedFS or MinIO) and the credentials from the usual ``AWS_*`` variables, so the same code talks
to AWS or to a server on loopback.

Writes are atomic: a local file is written to a temporary name in the same folder and renamed into
place; an S3 object only becomes visible once its upload completes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pyarrow.fs as pafs

S3_SCHEME = "s3://"
# A custom S3 endpoint (a server on loopback, MinIO, SeaweedFS) has no region to discover.
DEFAULT_S3_REGION = "us-east-1"
# The S3 settings that name no secret: Ray workers that touch S3 are given them in their
# runtime_env (which Ray's state API and dashboard show), so they reach the same S3 as the driver.
S3_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
               "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE")
# Never given to Ray: workers find credentials on their node (its environment, which a cluster
# videomar starts inherits from the driver; an instance role; a mounted secret) or in the
# credentials file AWS_SHARED_CREDENTIALS_FILE (a spec's s3_credentials_file) names.
S3_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def s3_env() -> dict[str, str]:
    """This process's S3 settings without its secrets, for the runtime_env of Ray workers."""
    return {k: os.environ[k] for k in S3_SETTINGS if k in os.environ}


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_SCHEME)


def absolute(uri: str) -> str:
    """S3 URIs as given; local paths made absolute (Ray workers run in other directories)."""
    uri = str(uri)
    return uri if is_s3(uri) else os.path.abspath(os.path.expanduser(uri))


def folder_of(uri: str) -> str:
    """The folder holding a file URI (absolute for local paths)."""
    uri = str(uri)
    return posixpath.dirname(uri) if is_s3(uri) else os.path.dirname(absolute(uri))


def resolve(ref: str, base: str) -> str:
    """``ref`` as an absolute path or URI: absolute paths and s3:// URIs as given, relative ones
    against the folder ``base`` (e.g. the folder of the manifest that names them)."""
    ref = str(ref)
    if is_s3(ref) or os.path.isabs(ref):
        return ref
    return join(base, *ref.split("/"))


def join(uri: str, *parts: str) -> str:
    """Join path parts with ``/`` for S3 URIs and the local separator otherwise."""
    uri = str(uri)
    if is_s3(uri):
        out = uri.rstrip("/")
        for part in parts:
            out = f"{out}/{str(part).strip('/')}"
        return out
    return str(Path(uri, *parts))


def s3_endpoint() -> str | None:
    """The custom S3 endpoint (``scheme://host:port``) from the environment, or None for AWS."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if not endpoint:
        return None
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    return f"{parsed.scheme or 'https'}://{parsed.netloc}"


def s3_region() -> str | None:
    # A custom endpoint has no region to discover; pyarrow would otherwise ask AWS for one.
    default = DEFAULT_S3_REGION if s3_endpoint() else None
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or default


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem configured from the AWS_* environment (endpoint override included)."""
    kwargs: dict = {}
    endpoint = s3_endpoint()
    if endpoint:
        scheme, _, kwargs["endpoint_override"] = endpoint.partition("://")
        kwargs["scheme"] = scheme
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    region = s3_region()
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``uri`` and the path inside it."""
    uri = str(uri)
    if is_s3(uri):
        return s3_filesystem(), uri[len(S3_SCHEME):].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    """The whole content of a file, as one version of it even while another process rewrites it;
    FileNotFoundError names the URI when it is missing."""
    if is_s3(uri):
        return _s3_get(uri)
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri}: no such file")
    with fs.open_input_stream(path) as stream:
        return stream.read()


def _s3_get(uri: str) -> bytes:
    """One GET of the whole object. pyarrow reads an S3 file as a HEAD (its size) and then ranged
    GETs, so an object rewritten in between (a batch's status document) came back cut at the old
    size: 52 of 1,032 reads made while another thread rewrote the object in a loop."""
    bucket, _, key = uri[len(S3_SCHEME):].partition("/")
    client = _s3_client(*(os.environ.get(k) for k in (*S3_SETTINGS, *S3_SECRETS)))
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise FileNotFoundError(f"{uri}: no such file") from None


@functools.lru_cache(maxsize=4)
def _s3_client(*settings: str | None):
    """A boto3 S3 client configured as s3_filesystem() is. ``settings``, the AWS_* variables, are
    the cache key only: a changed environment gets a new client (boto3 reads the credentials)."""
    import boto3

    return boto3.session.Session(region_name=s3_region()).client("s3", endpoint_url=s3_endpoint())


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` so that readers see either the old file, or the whole new one."""
    fs, path = filesystem(uri)
    if is_s3(uri):  # an S3 object becomes visible only once its upload completes
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary local path beside ``path`` (same suffix) to write to; renamed onto ``path``
    when the block succeeds, removed when it fails. The one way videomar writes a local file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def list_dir(uri: str) -> list[str]:
    """URIs of the files directly inside ``uri`` (sorted); empty when it does not exist."""
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    return sorted(join(uri, info.base_name) for info in infos if info.type == pafs.FileType.File)


def list_files(uri: str) -> list[tuple[str, int, float | None]]:
    """Every file below ``uri``, recursively, sorted: (path relative to ``uri`` with ``/``
    separators, size in bytes, mtime in seconds or None)."""
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(path):].replace(os.sep, "/").lstrip("/")
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        out.append((rel, int(info.size), mtime))
    return sorted(out)


def copy_tree(src: str, dst: str) -> None:
    """Copy every file below ``src`` to the same relative paths below ``dst`` (local or S3, either
    way), each file written atomically; FileNotFoundError when ``src`` holds no file."""
    files = list_files(src)
    if not files:
        raise FileNotFoundError(f"{src}: no files to copy (empty or missing)")
    for rel, _, _ in files:
        parts = rel.split("/")
        write_bytes_atomic(join(dst, *parts), read_bytes(join(src, *parts)))
