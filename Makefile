# The two commands the README promises: `make test` and `make demo`. Both work on a fresh clone:
# they create .venv, install the project with its extras, and go.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint typecheck unit demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[edge,dev]'
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# Gateway + three simulated homes on the real model (SmolLM2-135M, prepared into the cache once).
demo: $(STAMP)
	$(BIN)/llmtwin demo --work .demo

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache *.egg-info
