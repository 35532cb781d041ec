"""The main job end to end: `videomar quickstart --small` in a fresh work dir, as CI runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import decord
import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_quickstart_small_runs_every_step_and_leaves_a_video(tmp_path):
    from videomar.platform.quickstart import SMALL

    work = tmp_path / "qs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # the quickstart runs on its own in-process Ray
    env.pop("VIDEOMAR_LOG_LEVEL", None)  # the console as a user sees it
    proc = subprocess.run(
        [sys.executable, "-m", "videomar.platform.cli", "quickstart", "--small", "--workdir", str(work)],
        capture_output=True, text=True, timeout=580, env=env, cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]

    video = work / "generated" / "heldout.mp4"
    assert len(decord.VideoReader(str(video))) == SMALL.generate_frames
    for suffix in (".gif", ".png"):
        assert video.with_suffix(suffix).stat().st_size > 0
    export = work / "runs" / "quickstart-stage2" / "export"
    assert (export / "COMPLETE").exists()
    for stage in ("quickstart-stage1", "quickstart-stage2"):  # the end-of-stage eval ran
        assert (work / "runs" / stage / "export" / "eval.json").stat().st_size > 0
    # The final evaluation's summary and contact sheet (figures vary; every key is there).
    from videomar.platform.evaluation.report import QUALITY_KEYS

    quality = json.loads((work / "quality.json").read_text())
    assert set(QUALITY_KEYS) <= set(quality) and quality["videos"] >= 1
    assert Path(quality["contact_sheet"]).stat().st_size > 0 and quality["contact_sheet"] in output
    # Progress and the final summary name where everything is.
    assert "[1/" in output and str(video) in output and "mlflow ui" in output
    # A console a person can read: the phases, the step figures from rank 0, and the log's path;
    # Ray's, Ray Data's, Ray Train's and DeepSpeed's own output is in the log file only.
    lines = output.splitlines()
    assert len(lines) <= 60, output
    (log,) = (work / "logs").glob("quickstart-*.log")
    assert lines[0] == f"log: {log} (--verbose shows it all here)"
    for stage in ("quickstart-stage1", "quickstart-stage2"):  # rank 0's figures reached the view
        assert re.search(rf"train {stage}: done in \S+ \(step 6/6 · loss [0-9.]+ · lr \S+ · samples/s \S+ · "
                         r"checkpoint 6\)", output), output
    assert re.search(r"precompute quickstart-latents: done in \S+ \(videos 8/8 · clips \d+", output)
    internals = re.compile(r"RayTrainWorker|TrainController|PlacementGroupCleaner|streaming_executor|"
                           r"core_worker|raylet|deepspeed|DeepSpeed|Warning|\x1b\[")
    assert not [line for line in lines if internals.search(line)], output
    logged = log.read_text()
    for internal in ("RayTrainWorker", "TrainController", "streaming_executor"):
        assert internal in logged, internal
    for spec in ("vae.yaml", "precompute.yaml", "stage1.yaml", "stage2.yaml", "serve.yaml"):
        assert (work / spec).exists()
