"""The console of long verbs: plain progress lines off a terminal, the process's output (file
descriptors included) in the log file, and a failure shown as its reason, the log's last lines and
the log's path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from videomar.platform.console.capture import reason
from videomar.platform.console.view import Phase, PlainView

ROOT = Path(__file__).resolve().parents[2]


def test_plain_view_prints_lines_with_the_figures_never_redraws():
    out = io.StringIO()
    view = PlainView(out, every_s=0.05)
    outer, inner = Phase("[1/2] train", unit="step"), Phase("train stage1", total=10, unit="step")
    view.begin(outer)
    view.begin(inner)  # inside another: only its end is printed
    inner.update(4, loss=0.5123, lr=3e-4, **{"samples/s": 12.0})
    time.sleep(0.3)
    inner.update(10, checkpoint=10)
    view.end(inner, ok=True)
    view.end(outer, ok=False)
    view.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0] == "[1/2] train ..."
    ticks = [line for line in lines if line.startswith("  train stage1: step 4/10 · loss 0.512 · lr 3.00e-04 · "
                                                       "samples/s 12")]
    assert ticks and all(line.endswith("]") for line in ticks)
    assert any(line.startswith("train stage1: done in ") and "step 10/10" in line and "checkpoint 10" in line
               for line in lines)
    assert lines[-1].startswith("[1/2] train: FAILED in ")


def test_reason_is_the_last_named_error_of_a_wrapped_worker_error():
    wrapped = RuntimeError("Training failed.\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
                           "ValueError: the shard is truncated\n")
    assert reason(wrapped) == "ValueError: the shard is truncated"
    assert reason(KeyError("k")) == "KeyError: 'k'"


SCRIPT = textwrap.dedent("""
    import os, sys
    from videomar.platform import console
    console.enable()
    try:
        with console.session("failing", sys.argv[1]), console.phase("a phase that fails"):
            console.say("a line for the user")
            os.write(2, b"written by a C library on descriptor 2\\n")
            print("printed by a library", flush=True)
            raise ValueError("the reason it failed")
    except console.JobFailed:
        sys.exit(1)
""")


def test_a_failing_session_shows_reason_tail_and_log_path_and_the_log_holds_everything(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop(LOG_LEVEL := "VIDEOMAR_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env)
    (log,) = (tmp_path / "logs").glob("failing-*.log")
    shown = proc.stdout
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr  # JobFailed: no traceback on the console
    assert shown.splitlines()[0] == f"log: {log} (--verbose shows it all here)"
    assert "a line for the user" in shown and "printed by a library" not in shown.split("last lines")[0]
    assert "failed: ValueError: the reason it failed" in shown
    assert "  written by a C library on descriptor 2" in shown  # among the log's last lines
    assert shown.rstrip().endswith(f"full log: {log}")
    text = log.read_text()
    assert "written by a C library on descriptor 2" in text and "printed by a library" in text
    assert "Traceback (most recent call last)" in text and "a line for the user" in text
    # --verbose (here the environment's level): everything on the console, no log file.
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "v")], capture_output=True, text=True,
                          timeout=60, env={**env, LOG_LEVEL: "debug"})
    assert "written by a C library" in proc.stderr and "Traceback" in proc.stderr
    assert not (tmp_path / "v" / "logs").exists()


def test_the_cli_enables_sessions_for_its_call_only(tmp_path, capsys):
    """A process that runs the CLI and then calls the library (a notebook, the test suite) gets
    the library's plain prints back, not a console writing past its sys.stdout."""
    from videomar.platform import console
    from videomar.platform.cli import main

    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert console._enabled["on"] is False
    console.say("a plain line")
    assert "a plain line" in capsys.readouterr().out
