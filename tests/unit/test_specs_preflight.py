"""Every quickstart spec passes its job's preflight against the files the quickstart makes (here
written small); preflight refuses what would fail later, naming the field."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml

from tests.support import spec_layout
from videomar.errors import SpecError
from videomar.platform import jobs

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = sorted(glob.glob(str(ROOT / "jobs" / "quickstart" / "*.yaml")))


@pytest.fixture
def work(tmp_path, monkeypatch):
    spec_layout.quickstart(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the quickstart specs' paths are relative to its work dir
    return tmp_path


@pytest.mark.parametrize("path", QUICKSTART, ids=lambda p: Path(p).name)
def test_every_quickstart_spec_passes_preflight(work, path):
    jobs.preflight(jobs.load_spec(path))


def test_preflight_refuses_what_would_fail_later_naming_the_field(work):
    stage1 = yaml.safe_load((ROOT / "jobs" / "quickstart" / "stage1.yaml").read_text())
    images = {**stage1, "data": {**stage1["data"], "bucket": {"frames": 1, "height": 32, "width": 32}},
              "eval": {"videos": 2}}
    spec_layout.dataset(str(work / "latents"), [(1, 32, 32), (5, 32, 32)], vae_uri="../vae",
                        **spec_layout.QUICKSTART_LATENTS)
    with pytest.raises(SpecError, match=r"eval: bucket 1x32x32 has 1 latent frame\(s\)"):
        jobs.preflight(jobs.parse_spec(images, "images.yaml"))
    (work / "runs" / "quickstart-stage2" / "export" / "COMPLETE").unlink()
    for name, field in (("serve.yaml", "export"), ("generate.yaml", "export"), ("eval.yaml", "export")):
        with pytest.raises(SpecError, match=rf"{name}: {field}: export .* is incomplete"):
            jobs.preflight(jobs.load_spec(ROOT / "jobs" / "quickstart" / name))
    (work / "vae" / "config.json").unlink()
    with pytest.raises(SpecError, match=r"precompute.yaml: vae: .* is not a VAE export"):
        jobs.preflight(jobs.load_spec(ROOT / "jobs" / "quickstart" / "precompute.yaml"))


def test_old_names_are_refused_naming_the_new_one(work):
    stage2 = yaml.safe_load((ROOT / "jobs" / "quickstart" / "stage2.yaml").read_text())
    with pytest.raises(SpecError, match="scaling is no longer a key here: use resources"):
        jobs.parse_spec({**stage2, "scaling": stage2["resources"]})
    with pytest.raises(SpecError, match="init_from: uri is no longer a key here: use export"):
        jobs.parse_spec({**stage2, "init_from": {"uri": "runs/quickstart-stage1/export"}})
    serve = {"kind": "serve", "checkpoint": "runs/x", "deployment": {"replicas": 2}}
    with pytest.raises(SpecError, match=r"checkpoint is no longer a key here: use export"):
        jobs.parse_spec(serve)
    with pytest.raises(SpecError, match=r"videos is no longer a key here: use source"):
        jobs.parse_spec({"kind": "precompute", "videos": "v", "vae": "vae", "output": "o",
                         "buckets": [{"frames": 5, "height": 32, "width": 32}]})


def test_extends_merges_a_base_file_and_names_a_missing_one(tmp_path):
    (tmp_path / "base.yaml").write_text("kind: serve\nexport: e\nhttp: {port: 9000, host: 127.0.0.1}\n")
    (tmp_path / "spec.yaml").write_text("extends: base.yaml\nhttp: {port: 9001}\n")
    spec = jobs.load_spec(tmp_path / "spec.yaml")
    assert (spec.export, spec.http.port, spec.http.host) == ("e", 9001, "127.0.0.1")
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(SpecError, match="a loop"):
        jobs.load_spec(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(SpecError, match=r"lost.yaml: extends: .*nowhere.yaml does not exist"):
        jobs.load_spec(tmp_path / "lost.yaml")


def test_run_refuses_a_bad_input_in_one_line_before_starting_ray(work, capsys):
    import ray

    from videomar.platform.cli import main

    (work / "runs" / "quickstart-stage2" / "export" / "COMPLETE").unlink()
    connected = ray.is_initialized()  # an earlier test in the session may have started one
    assert main(["run", str(ROOT / "jobs" / "quickstart" / "eval.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "export: export" in err and "is incomplete" in err
    assert ray.is_initialized() == connected  # preflight refused it before Ray was started
    assert main(["validate", "--deep", str(ROOT / "jobs" / "quickstart" / "stage1.yaml")]) == 0
    assert main(["validate", "--deep", str(ROOT / "jobs" / "quickstart" / "eval.yaml")]) == 2
