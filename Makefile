# Two commands set everything up on a fresh machine with Python 3.11:
#   make study   # the whole study on the synthetic default (dvc repro)
#   make test    # the fast test suite (CI: make ci = ruff + every test)
# Both create .venv when it is missing and are fast on the second run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: study test test-all lint ci setup mlflow-ui bench clean-study readme

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

.dvc/config:
	git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	$(BIN)/dvc init -q 2>/dev/null || true
	$(BIN)/dvc config core.analytics false

# Every stage of dvc.yaml through DVC, study.jobs stages at a time, each once the stages it depends
# on are done (vireid repro-matrix: DVC releases its lock while a stage runs). `dvc repro` after it
# has nothing to do.
study: $(STAMP) .dvc/config
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/vireid repro-matrix
	@echo "report: reports/study/report.md (HTML: reports/study/report.html); runs: make mlflow-ui"

# README's results region (between the vireid:results comments) from the study's report, and the
# audit tables of docs/synthetic-dataset.md from the study's dataset audit.
readme: study
	$(BIN)/vireid report --from-report reports/study --readme README.md
	$(BIN)/vireid data audit --from-audit reports/audit/synth-sysu --doc docs/synthetic-dataset.md

# `make test` leaves out the tests marked slow (end-to-end CLI runs, the DVC study, the wheel
# install) and runs on 2 processes (pytest-xdist); `make test-all` and CI run every test, in one.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

ci: lint test-all

mlflow-ui: $(STAMP)
	$(BIN)/vireid mlflow-ui

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_eval
	$(BIN)/python -m benchmarks.bench_train
