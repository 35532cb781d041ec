"""``videomar serve``: arguments into a ServeSpec, and the real command serving over HTTP until
interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support.process_tree import ctrl_c, sigint_as_in_a_terminal
from tests.support.s3 import free_port
from tests.support.tiny_export import write_tiny_export
from tests.support.videos import decode_mp4, png_b64
from videomar.platform.commands.serve import serve_spec_from_args
from videomar.errors import SpecError

START_TIMEOUT_S = 120


def args(**kw):
    base = {"spec": None, "export": None, "host": None, "port": None, "token_file": None}
    return argparse.Namespace(**{**base, **kw})


def test_arguments_make_a_serve_spec(tmp_path):
    spec = serve_spec_from_args(args(export="s3://b/export"))
    assert spec.export == "s3://b/export" and spec.http.host == "127.0.0.1" and spec.http.port == 8000
    path = tmp_path / "serve.yaml"
    path.write_text("kind: serve\nexport: ckpt\nhttp: {port: 9001}\ndeployment: {max_batch_size: 4}\n")
    spec = serve_spec_from_args(args(spec=str(path), host="0.0.0.0", token_file="/run/secret"))
    assert (spec.http.host, spec.http.port, spec.auth.token_file) == ("0.0.0.0", 9001, "/run/secret")
    assert spec.deployment.max_batch_size == 4
    with pytest.raises(SpecError, match="either"):
        serve_spec_from_args(args())
    with pytest.raises(SpecError, match="either"):
        serve_spec_from_args(args(spec=str(path), export="x"))
    path.write_text("kind: serve\nexport: c\ndeployment: {max_batch_size: 0}\n")
    with pytest.raises(SpecError, match="deployment.max_batch_size"):
        serve_spec_from_args(args(spec=str(path)))


def test_serve_refuses_an_incomplete_export_before_starting_anything(tmp_path, capsys):
    from videomar.platform.cli import main as cli

    export = write_tiny_export(str(tmp_path / "export"))
    (tmp_path / "export" / "COMPLETE").unlink()
    assert cli(["serve", "--export", export]) == 2
    err = capsys.readouterr().err
    assert "export: export" in err and "COMPLETE" in err
    assert cli(["serve", "--export", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_videomar_serve_answers_with_a_token_and_stops_on_interrupt(tmp_path):
    export = write_tiny_export(str(tmp_path / "export"))
    token = tmp_path / "token"
    token.write_text("cli-token\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "videomar.platform.cli", "serve", "--export", export, "--port", str(port),
         "--token-file", str(token)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=sigint_as_in_a_terminal,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "videomar serve did not come up"
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # the proxy is still starting
                pass
            time.sleep(1)
        body = {"image": png_b64(), "frames": 4, "steps": 2, "seed": 1}
        assert requests.post(f"{url}/v1/generate", json=body, timeout=60).status_code == 401
        r = requests.post(f"{url}/v1/generate", json=body, timeout=60,
                          headers={"Authorization": "Bearer cli-token", "Accept": "video/mp4"})
        assert r.status_code == 200 and decode_mp4(r.content).shape[0] == 4
        while "videomar serving" not in (tmp_path / "serve.log").read_text():
            assert time.monotonic() < deadline, "videomar serve did not print its URL"
            time.sleep(0.5)
        seconds, status, left, started = ctrl_c(proc)
        print(f"\nvideomar serve: Ctrl-C -> exited {status} in {seconds:.1f} s; {started} processes it started, "
              f"{len(left)} left: {left}")
        assert status == 0 and started > 0 and not left
        assert "cli-token" not in (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
