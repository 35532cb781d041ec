"""S3 secrets stay out of Ray's metadata: the workers' runtime_env carries only settings that name
no secret, and a credentials file named by a spec is enough to reach S3."""

from __future__ import annotations

import pytest

from videomar.artifacts import storage
from videomar.platform.jobs import execute, parse_spec, use_credentials_file


def test_the_workers_env_carries_no_secret(monkeypatch):
    for name in (*storage.S3_SETTINGS, *storage.S3_SECRETS):
        monkeypatch.setenv(name, f"value-of-{name}")
    assert set(storage.s3_env()) == set(storage.S3_SETTINGS)
    assert not [v for v in storage.s3_env().values() if "SECRET" in v or "KEY_ID" in v or "SESSION" in v]


def test_a_credentials_file_named_by_the_spec_reaches_s3(s3_server, tmp_path, monkeypatch):
    for name in storage.S3_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = from-file\naws_secret_access_key = from-file-secret\n")
    spec = parse_spec({"kind": "serve", "export": "e", "s3_credentials_file": str(credentials)})
    use_credentials_file(spec)
    assert storage.s3_env()["AWS_SHARED_CREDENTIALS_FILE"] == str(credentials)
    import boto3  # the AWS credential chain (pyarrow's C++ SDK reads the same file) finds the key

    assert boto3.Session().get_credentials().access_key == "from-file"
    # moto also takes unsigned requests, so this shows the path works, not which key signed it.
    uri = s3_server.uri("credentials-file", "probe.txt")
    storage.write_bytes_atomic(uri, b"written with the file's credentials")
    assert storage.read_bytes(uri) == b"written with the file's credentials"
    missing = parse_spec({"kind": "serve", "export": "e", "s3_credentials_file": str(tmp_path / "nope")})
    with pytest.raises(Exception, match=r"s3_credentials_file: .*nope is not a file"):
        execute(missing)
