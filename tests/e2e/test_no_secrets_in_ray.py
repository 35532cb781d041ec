"""A job against the test S3 server on a Ray head videomar started with S3 credentials in its
environment: afterwards Ray's state API (tasks and actors with detail, the jobs with their
runtime_env) holds the S3 endpoint the workers were given but neither secret."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from pathlib import Path

import pytest
import yaml

from tests.support.latents import FRAMES, SIZE, quickstart_vae
from tests.support.ray_head import ray_head  # noqa: F401
from tests.support.ray_state import job_details, state
from videomar.data_pipelines.sample_data import write_sample_videos
from videomar.platform import cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KEY_ID = "AKIAVIDEOMAR" + secrets.token_hex(4).upper()
SECRET = "videomar-secret-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def secret_env(s3_server):
    """Distinctive credentials in this process's environment (moto takes any), set before the
    head starts so that its nodes have them, as a cluster videomar starts itself does."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    yield s3_server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_no_secret_reaches_rays_state_api(secret_env, ray_head, tmp_path):
    videos = write_sample_videos(tmp_path / "sample", 2, seed=0, frames=FRAMES, size=SIZE)
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "jobs/quickstart/precompute.yaml").read_text())
    data.update(source=str(videos), vae=quickstart_vae(tmp_path / "vae"), output=secret_env.uri("secrets", "latents"),
                resources={"workers": 1, "cpus_per_worker": 0.5})
    (tmp_path / "precompute.yaml").write_text(yaml.safe_dump(data))
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        status = cli.main(["submit", str(tmp_path / "precompute.yaml"), "--wait", *ray_head.cli_args()])
    assert status == 0, out.getvalue()[-2000:]
    seen = {"tasks": state(ray_head, "tasks"), "actors": state(ray_head, "actors"), "jobs": job_details(ray_head)}
    text = json.dumps(seen)
    print(f"\nRay state API: {len(seen['tasks'])} tasks, {len(seen['actors'])} actors, {len(seen['jobs'])} jobs, "
          f"{len(text)} characters; access key id found {text.count(KEY_ID)} times, secret {text.count(SECRET)} times")
    assert secret_env.endpoint in text  # the workers' runtime_env is shown: a secret there would be too
    assert KEY_ID not in text and SECRET not in text
