# Quick start: `make demo` runs the whole system on a simulated fleet; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed-test
	$(BIN)/picoctl demo

test: $(VENV)/.installed-test  # one worker per core, each taking whole test files (their fixtures stay together)
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: $(VENV)/.installed-test  # style, types and the import contracts in pyproject.toml
	$(BIN)/ruff check
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

screenshots: $(VENV)/.installed-test
	$(BIN)/python tests/tui/screenshots.py screenshots

bench: $(VENV)/.installed-test
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
