# One command to run, one to test. Both create ./.venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run lint test bench clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml; installing it first keeps pip on the CPU wheel.
	$(PY) -m pip install --quiet "torch==2.13.0"
	# The client distribution first: the service depends on it and it is not on PyPI.
	$(PY) -m pip install --quiet -e ./client
	$(PY) -m pip install --quiet -e ".[dev,experiments]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rps serve --demo

# Formatting, lint and types first: a failure here is cheaper than a failed test run.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -ra

clean:
	rm -rf $(VENV) data
