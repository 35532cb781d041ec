"""Where the API token comes from, and how a request's Authorization header is checked."""

from __future__ import annotations

import pytest

from videomar.platform.serving.auth import AuthError, HostCheck, TokenCheck, digest, exposure, is_loopback, read_token
from videomar.platform.serving.bodies import require_json
from videomar.platform.serving.requests import RequestError
from videomar.platform.specs.serve import AuthSection, HttpSection


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


def test_without_a_token_only_loopback_binds_are_allowed_and_it_says_auth_is_off():
    off, on = TokenCheck(None), TokenCheck(digest("t"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        assert any("auth is off" in note for note in exposure(HttpSection(host=host), off))
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(AuthError, match=r"^http.host: .*no token is configured"):
            exposure(HttpSection(host=host), off)
    assert exposure(HttpSection(host="10.0.0.5"), on) == []
    assert "Host header is not checked" in exposure(HttpSection(host="0.0.0.0"), on)[0]


def test_the_host_header_must_name_the_service():
    loop = HostCheck.from_config(HttpSection(host="127.0.0.1"))
    for header in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "::1"):
        assert loop.allows(header), header
    for header in (None, "", "evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]:80"):
        assert not loop.allows(header), header
    named = HostCheck.from_config(HttpSection(host="0.0.0.0", allowed_hosts=["videomar.internal"]))
    assert named.allows("videomar.internal:8000") and not named.allows("localhost")
    assert HostCheck.from_config(HttpSection(host="0.0.0.0")).allows("anything")  # the token guards
    assert HostCheck.from_config(HttpSection(host="10.0.0.5")).names == {"10.0.0.5"}


def test_json_endpoints_require_a_json_content_type():
    require_json("application/json")
    require_json("Application/JSON; charset=utf-8")
    for given in (None, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        with pytest.raises(RequestError, match="^content-type: ") as caught:
            require_json(given)
        assert caught.value.status == 415


def test_serve_refuses_an_open_bind_without_a_token_before_starting_anything(tmp_path, capsys, monkeypatch):
    from tests.support.tiny_export import write_tiny_export
    from videomar.platform.cli import main as cli

    monkeypatch.delenv("VIDEOMAR_API_TOKEN", raising=False)
    export = write_tiny_export(str(tmp_path / "export"))
    assert cli(["serve", "--export", export, "--host", "0.0.0.0"]) == 2
    assert "http.host: '0.0.0.0' is not a loopback address and no token is configured" in capsys.readouterr().err
