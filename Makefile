# The two commands of the README: `make quickstart` and `make test`.
# Each creates .venv and installs the pinned dependencies when they are missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: quickstart test test-fast install bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the constraints file, so nothing pulls a CUDA build.
	$(PY) -m pip install -q -r constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/videomar quickstart $(ARGS)

# Every tier: tests/unit (no Ray, no servers), tests/integration, tests/e2e. The 25 slowest tests
# are listed at the end: the suite is to stay under 20 minutes on two cores.
test: $(STAMP)
	$(PYTEST) --durations=25 tests $(ARGS)

# The unit tier alone: a minute and a half on two cores.
test-fast: $(STAMP)
	$(PYTEST) tests/unit $(ARGS)

clean:
	rm -rf $(VENV) quickstart runs
