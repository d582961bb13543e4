# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the pins change; the stamp names the extras installed.
DEPS := pyproject.toml constraints.txt Makefile

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_ENABLE_ONEDNN_OPTS := 0
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

# The TMY3 example trains and evaluates models; it runs last, so the demo ends with its report's path.
EXAMPLES := examples/payerne_1min.yaml examples/payerne_10min_temperature.yaml examples/payerne_15min_clean.yaml \
	examples/payerne_align_cloud.yaml examples/tmy3_greensboro.yaml

.PHONY: demo test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3

$(VENV)/.installed-base: $(BIN)/python $(DEPS)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[cpu]'
	touch $@

$(VENV)/.installed-dev: $(BIN)/python $(DEPS)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[cpu,dask,dev]'
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

## demo: set up, then run the pipeline on every bundled example; the last line is the TMY3 report's path
demo: install
	@echo "== results: Parquet and reports under ./storage/<project>/, metadata in ./storage/zeitflow.db"
	@set -eo pipefail; log=$$(mktemp); for cfg in $(EXAMPLES); do \
	  echo "== zeitflow run $$cfg"; \
	  $(BIN)/zeitflow run "$$cfg" | tee -a "$$log"; \
	done; grep '^report: ' "$$log" | tail -1; rm -f "$$log"

## test: set up with the dev extras, then run the whole suite (tests start their own services)
test: install-dev
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install-dev
	$(BIN)/ruff check .

## bench: every benchmark in one table, then the orchestration overhead (BENCH_ARGS=--big adds a 1 GB load)
bench: install
	$(BIN)/python benchmarks/run_all.py --overhead $(BENCH_ARGS)

clean:
	rm -rf .prefect .pytest_cache storage/*/ storage/zeitflow.db*
