# Targets for developers; CI runs .ci/run, which runs the README's test command.
PYTHON ?= python
SOURCES = sb3_jepa sb3_jepa_zoo_hook.py setup.py tests benchmarks

.PHONY: format lint type test test-fast docs check

format:
	$(PYTHON) -m ruff format $(SOURCES)
	$(PYTHON) -m ruff check --fix $(SOURCES)

lint:
	$(PYTHON) -m ruff format --check $(SOURCES)
	$(PYTHON) -m ruff check $(SOURCES)

type:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -n 2

# A quick loop: the tests marked slow (subprocess CLIs, identity tasks) are left out; CI runs them all
test-fast:
	$(PYTHON) -m pytest -n 2 -m "not slow"

# The documentation site (Sphinx, sb3-contrib's style), warnings as errors
docs:
	$(PYTHON) -m sphinx -W --keep-going -b html -q docs docs/_build/html

check: lint type test docs
