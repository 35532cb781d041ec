# The two commands of the README: `make quickstart` and `make test`.
# Each creates .venv and installs the pinned dependencies when they are missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quickstart test install bench clean

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

test: $(STAMP)
	# One rerun for end-to-end tests whose servers and clusters share two cores (see NOTES.md).
	$(PY) -m pytest -q -p no:cacheprovider --reruns 1 --reruns-delay 2 tests $(ARGS)

clean:
	rm -rf $(VENV) quickstart runs
