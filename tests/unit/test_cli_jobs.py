"""The job and cluster verbs without a cluster: help, addresses, tokens, the env file, and the
errors that name what is wrong."""

from __future__ import annotations

import os

import pytest

from videomar.platform import cli
from videomar.platform.envfile import apply_env_defaults, read_env_file, write_env_file
from videomar.platform.processes import free_port
from videomar.platform.submission import SubmissionError, auth_token, resolve_address

VERBS = ["submit", "status", "logs", "stop", "list", "curriculum", "up", "down", "validate", "run"]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No address, token or env file from the surroundings; cwd is an empty folder."""
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                 "VIDEOMAR_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: videomar {verb}")
    # A description beyond the usage line and the options.
    assert len(out.split("\n\n")) >= 3


def test_no_address_anywhere_says_how_to_give_one(clean_env, capsys):
    assert cli.main(["status", "some-job"]) == 1
    err = capsys.readouterr().err
    assert "no Ray cluster address" in err and "--address" in err and "videomar up" in err


def test_bad_address_is_named(clean_env, capsys):
    assert cli.main(["list", "--address", "ftp://cluster:8265"]) == 1
    assert "--address 'ftp://cluster:8265': unsupported scheme 'ftp'" in capsys.readouterr().err
    dead = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["list", "--address", dead]) == 1
    assert f"cannot reach the Ray Jobs API at {dead}" in capsys.readouterr().err


def test_submit_refuses_a_missing_spec_before_connecting(clean_env, capsys):
    assert cli.main(["submit", "nowhere.yaml", "--address", "http://127.0.0.1:1"]) == 2  # a user error
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere.yaml" in err and "cannot read spec" in err and err.count("\n") == 1


def test_curriculum_refuses_a_missing_stage_before_submitting(clean_env, capsys):
    assert cli.main(["curriculum", "missing-stage.yaml", "--address", "http://127.0.0.1:1"]) == 2
    assert "missing-stage.yaml: cannot read spec" in capsys.readouterr().err


def test_env_file_round_trip_and_precedence(clean_env, tmp_path):
    path = tmp_path / ".videomar" / "env"
    values = {"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8265", "ODD": "a b 'c' $d"}
    write_env_file(path, values)
    assert read_env_file(path) == values
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # The default location is ./.videomar/env; variables already set win over the file.
    assert resolve_address(None) == "http://127.0.0.1:8265"
    clean_env.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert resolve_address(None) == "http://10.0.0.1:8265"
    assert resolve_address("http://explicit:8265") == "http://explicit:8265"
    clean_env.setenv("ODD", "from the shell")
    assert apply_env_defaults() == {"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8265"}
    assert os.environ["ODD"] == "from the shell"


def test_env_file_rejects_malformed_lines(tmp_path):
    path = tmp_path / "env"
    path.write_text("GOOD=1\nthis is not an assignment\n")
    with pytest.raises(ValueError, match="line 2: expected NAME=value"):
        read_env_file(path)


def test_token_sources_in_order(clean_env, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert auth_token(None) is None  # RAY_AUTH_MODE=disabled and nothing given
    assert auth_token(str(token_file)) == "from-file"  # an explicit file always counts
    clean_env.setenv("RAY_AUTH_MODE", "token")
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert auth_token(None) == "from-file"
    clean_env.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_token(None) == "from-env"


def test_token_mode_without_a_token_says_where_to_put_one(clean_env, tmp_path):
    clean_env.setenv("RAY_AUTH_MODE", "token")
    clean_env.setenv("HOME", str(tmp_path))
    clean_env.setattr("videomar.platform.submission.DEFAULT_TOKEN_PATH", tmp_path / ".ray" / "auth_token")
    with pytest.raises(SubmissionError, match="RAY_AUTH_MODE=token but no token found: pass --token-file"):
        auth_token(None)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(SubmissionError, match="the token file is empty"):
        auth_token(str(empty))
