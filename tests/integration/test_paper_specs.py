"""Every paper spec passes its job's preflight against its s3://videomar/... layout, faked small on
the S3 server on loopback: the curriculum would not fail on a field after 100k steps."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml

from tests.support import spec_layout
from tests.support.s3 import create_bucket
from videomar.platform import jobs
from videomar.platform.submission import load_spec_text

ROOT = Path(__file__).resolve().parents[2]
PAPER = sorted(glob.glob(str(ROOT / "jobs" / "paper" / "*.yaml")))
BUCKET = "videomar"  # the paper specs' bucket


@pytest.fixture(scope="module")
def paper_storage(s3_server):
    create_bucket(s3_server.endpoint, BUCKET)
    spec_layout.paper(f"s3://{BUCKET}")
    return s3_server


@pytest.mark.parametrize("path", PAPER, ids=lambda p: Path(p).name)
def test_every_paper_spec_passes_preflight(paper_storage, path, monkeypatch):
    # The paper's serve spec binds 0.0.0.0, which needs a token: an operator sets the variable.
    monkeypatch.setenv("VIDEOMAR_API_TOKEN", "paper-spec-test-token")
    jobs.preflight(jobs.load_spec(path))


def test_a_stage_is_shipped_with_its_base_merged_in(paper_storage):
    spec, text = load_spec_text(ROOT / "jobs" / "paper" / "stage3_long_256.yaml")
    data = yaml.safe_load(text)
    assert "extends" not in data and jobs.parse_spec(data).model_dump() == spec.model_dump()
    assert (spec.resources.workers, spec.deepspeed.zero_stage, spec.model.preset) == (64, 3, "large")
