# One entry point for newcomers and CI. Every target creates/refreshes the virtualenv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
COUNT  ?= 1000

.PHONY: demo serve federation test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: set up, create the SQLite database, seed $(COUNT) demo batteries and serve everything
demo: $(STAMP)
	$(BIN)/dbp db upgrade
	$(BIN)/dbp demo --count $(COUNT)

serve: $(STAMP)
	$(BIN)/dbp serve

## federation: a registry, two repositories and a backup node as four processes on ports 8100-8103 (var/federation)
federation: $(STAMP)
	$(BIN)/dbp federation

## test: set up (incl. Debian chromium for the browser tests) and run the whole suite
test: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-zbar
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## bench: benchmarks against same-run baselines (N passports, default 100000)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
