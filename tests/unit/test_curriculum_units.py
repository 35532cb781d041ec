"""Curriculum wiring without a cluster: which stages are accepted, and how each stage is pointed
at the previous stage's export."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from videomar.platform.curriculum import load_stages, wire
from videomar.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "jobs" / "quickstart"


def absolute_stage(src: Path, dest: Path, storage: Path) -> str:
    """A quickstart stage with its storage made absolute, as a cluster needs."""
    data = yaml.safe_load(src.read_text())
    data["storage"] = str(storage)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(dest)


def test_stages_are_wired_to_the_previous_export_keeping_carry(tmp_path):
    runs = tmp_path / "runs"
    paths = [absolute_stage(QUICKSTART / f"stage{i}.yaml", tmp_path / f"s{i}.yaml", runs) for i in (1, 2)]
    first, second = load_stages(paths)
    assert first.export_uri == str(runs / "quickstart-stage1" / "export")
    spec, text = wire(second, first.export_uri)
    assert spec.init_from.uri == first.export_uri
    assert set(spec.init_from.carry) == {"ema", "weights"}
    # The shipped YAML is the stage as written but for init_from.uri.
    shipped = yaml.safe_load(text)
    written = yaml.safe_load(Path(paths[1]).read_text())
    assert shipped["init_from"]["export"] == first.export_uri
    shipped["init_from"]["export"] = written["init_from"]["export"]
    assert shipped == written


def test_a_first_stage_without_init_from_gets_one_when_it_follows_another(tmp_path):
    runs = tmp_path / "runs"
    a = absolute_stage(QUICKSTART / "stage1.yaml", tmp_path / "a.yaml", runs)
    data = yaml.safe_load((QUICKSTART / "stage1.yaml").read_text())
    data.update(name="again", storage=str(runs))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data))
    first, second = load_stages([a, str(tmp_path / "b.yaml")])
    spec, _ = wire(second, first.export_uri)
    assert spec.init_from.uri == first.export_uri and set(spec.init_from.carry) == {"ema", "weights"}


def test_relative_storage_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"stage1\.yaml: storage: 'runs' is a relative path"):
        load_stages([str(QUICKSTART / "stage1.yaml")])


def test_only_train_stages(tmp_path):
    with pytest.raises(SpecError, match=r"serve\.yaml: kind: a curriculum stage must be kind 'train', got 'serve'"):
        load_stages([str(ROOT / "jobs" / "paper" / "serve.yaml")])


def test_two_stages_with_one_export_are_refused(tmp_path):
    runs = tmp_path / "runs"
    a = absolute_stage(QUICKSTART / "stage1.yaml", tmp_path / "a.yaml", runs)
    b = absolute_stage(QUICKSTART / "stage1.yaml", tmp_path / "b.yaml", runs)
    with pytest.raises(SpecError, match=r"b\.yaml: export: .* is also the export of .*a\.yaml"):
        load_stages([a, b])


def test_a_bad_later_stage_fails_before_anything_is_submitted(tmp_path):
    runs = tmp_path / "runs"
    a = absolute_stage(QUICKSTART / "stage1.yaml", tmp_path / "a.yaml", runs)
    data = yaml.safe_load((QUICKSTART / "stage2.yaml").read_text())
    data.update(storage=str(runs), schedule={"steps": -3})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"bad\.yaml: invalid train spec: schedule\.steps"):
        load_stages([a, str(tmp_path / "bad.yaml")])


def test_the_paper_curriculum_loads_as_a_curriculum():
    stages = load_stages([str(p) for p in sorted((ROOT / "jobs" / "paper").glob("stage*.yaml"))])
    # Each paper stage already names its predecessor's export; wiring keeps them consistent.
    for previous, stage in zip(stages, stages[1:]):
        assert stage.spec.init_from.uri == previous.export_uri
        assert wire(stage, previous.export_uri)[0].init_from == stage.spec.init_from
