"""Ctrl-C (SIGINT to the process group, as a terminal sends it) on `videomar run` and
`videomar quickstart` while their in-process Ray works: they exit, and every process they started
is gone, counted by PID. (`videomar serve` is interrupted in test_serve_cli.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.latents import FRAMES, SIZE, quickstart_vae
from tests.support.process_tree import ctrl_c, descendants, sigint_as_in_a_terminal
from videomar.data_pipelines.sample_data import write_sample_videos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180
INTERRUPTED = 130  # the CLI's status after Ctrl-C


def interrupt_when(args: list[str], cwd: Path, marker: str, log_marker: str = "") -> tuple[float, int, list[str], int, str]:
    """Start ``videomar ARGS``, Ctrl-C it once its output shows ``marker`` (Ray runs under it by then)
    and its log file (named on the output's first line) shows ``log_marker``."""
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONUNBUFFERED": "1"}
    log_path = cwd / "out.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "videomar.platform.cli", *args], cwd=cwd, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=sigint_as_in_a_terminal)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            # Ray has started by the time the marker shows (the verbs start it first).
            while not shown(log_path, marker, log_marker) or not descendants(proc.pid):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
            seconds, status, left, started = ctrl_c(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return seconds, status, left, started, log_path.read_text()


def shown(out_path: Path, marker: str, log_marker: str) -> bool:
    out = out_path.read_text()
    if marker not in out:
        return False
    if not log_marker:
        return True
    log = Path(out.split("log: ", 1)[1].split()[0])
    return log.exists() and log_marker in log.read_text()


def report(what: str, seconds: float, status: int, left: list[str], started: int) -> None:
    print(f"\n{what}: Ctrl-C -> exited {status} in {seconds:.1f} s; {started} processes it started, "
          f"{len(left)} left: {left}")


def test_ctrl_c_stops_videomar_run_and_leaves_no_process(tmp_path):
    videos = write_sample_videos(tmp_path / "sample", 8, seed=0, frames=FRAMES, size=SIZE)
    data = yaml.safe_load((ROOT / "jobs/quickstart/precompute.yaml").read_text())
    data.update(source=str(videos), vae=quickstart_vae(tmp_path / "vae"), output=str(tmp_path / "latents"))
    (tmp_path / "precompute.yaml").write_text(yaml.safe_dump(data))
    seconds, status, left, started, out = interrupt_when(["run", "precompute.yaml"], tmp_path, "precompute quickstart-latents ...")
    report("videomar run", seconds, status, left, started)
    assert status == INTERRUPTED and "interrupted" in out, out[-2000:]
    assert started > 0 and not left


# While Ray Train starts its worker group, and while the workers train: Ray Train's own SIGINT
# handler once made both exit 1, after a minute on a busy machine. (Ctrl-C outside Ray Train is
# the `videomar run` precompute case above.)
@pytest.mark.parametrize("log_marker", ["Attempting to start training worker group",
                                        "Wrapping provided model in DistributedDataParallel"])
def test_ctrl_c_stops_videomar_quickstart_and_leaves_no_process(tmp_path, log_marker):
    seconds, status, left, started, out = interrupt_when(
        ["quickstart", "--small", "--workdir", str(tmp_path / "qs")], tmp_path, "(vae.yaml)", log_marker)
    report("videomar quickstart", seconds, status, left, started)
    assert status == INTERRUPTED and "interrupted" in out, out[-2000:]
    assert started > 0 and not left
