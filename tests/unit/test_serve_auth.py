"""Where the API token comes from, and how a request's Authorization header is checked."""

from __future__ import annotations

import pytest

from videomar.platform.serving.auth import AuthError, TokenCheck, read_token
from videomar.platform.specs.serve import AuthSection


def test_token_from_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("VIDEOMAR_API_TOKEN", raising=False)
    assert read_token(AuthSection()) is None
    assert not TokenCheck.from_config(AuthSection()).enabled
    monkeypatch.setenv("VIDEOMAR_API_TOKEN", " from-env \n")
    assert read_token(AuthSection()) == "from-env"
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert read_token(AuthSection(token_file=str(secret))) == "from-file"  # the file wins
    assert read_token(AuthSection(token_env=None)) is None
    secret.write_text("")
    with pytest.raises(AuthError, match="auth.token_file"):
        read_token(AuthSection(token_file=str(secret)))
    with pytest.raises(AuthError, match="auth.token_file"):
        read_token(AuthSection(token_file=str(tmp_path / "missing")))
    monkeypatch.setenv("VIDEOMAR_API_TOKEN", "")
    with pytest.raises(AuthError, match="VIDEOMAR_API_TOKEN"):
        read_token(AuthSection())


def test_only_the_right_bearer_token_passes(monkeypatch):
    monkeypatch.setenv("VIDEOMAR_API_TOKEN", "t0ken")
    check = TokenCheck.from_config(AuthSection())
    assert "t0ken" not in repr(check)  # only a digest is kept
    assert check.allows("Bearer t0ken") and check.allows("bearer t0ken")
    for header in (None, "", "t0ken", "Bearer", "Bearer t0ken2", "Basic t0ken", "Bearer T0KEN"):
        assert not check.allows(header), header
    assert TokenCheck(None).allows(None)
