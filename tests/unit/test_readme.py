"""The README speaks for the code: its spec reference is the generated one, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from videomar.platform.cli import build_parser
from videomar.platform.jobs import load_spec
from videomar.platform.jobs.reference import BEGIN, END, reference

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_spec_reference_is_current():
    start, end = README.index(BEGIN), README.index(END) + len(END)
    assert README[start:end] == reference(), "run: python -m videomar.platform.jobs.reference and paste it into README.md"


def test_the_two_commands_are_in_the_readme_and_the_makefile():
    assert "make quickstart" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^quickstart:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_videomar_verb_in_the_readme_exists():
    verbs = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    used = set(re.findall(r"^\s*(?:cd \S+ && )?videomar ([a-z-]+)", README, re.M))
    assert used, "the README shows no videomar commands"
    assert used <= verbs, f"README names verbs that do not exist: {sorted(used - verbs)}"


def test_job_specs_named_in_the_readme_exist_and_validate():
    paths = set(re.findall(r"(jobs/[\w/]+\.yaml)", README))
    assert paths
    for path in sorted(paths):
        load_spec(ROOT / path)
