# taiwa — one-command set-up. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROJECT ?= .

.PHONY: install run test check bench format clean

install: $(STAMP) ## create .venv and install taiwa with its test extras (quick when nothing changed)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taiwa needs Python >= 3.11")'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: install ## check the reference assistant and draw its flows
	$(BIN)/taiwa validate --project $(PROJECT)
	$(BIN)/taiwa visualize --project $(PROJECT) --output $(PROJECT)/.taiwa-flows.mmd
	@echo "Flows drawn to $(PROJECT)/.taiwa-flows.mmd (Mermaid). Training and serving (taiwa train / run) are not built yet."

test: install ## run the test suite
	$(BIN)/python -m pytest -q

check: install ## lint, format check and type check
	$(BIN)/ruff format --check engine cli actions tests
	$(BIN)/ruff check engine cli actions tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format engine cli actions tests
	$(BIN)/ruff check --fix engine cli actions tests

bench: install ## heavy benchmarks (kept out of CI)
	@if ls benchmarks/bench_*.py >/dev/null 2>&1; then for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done; else echo "no benchmarks yet"; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
