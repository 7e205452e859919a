# Lifecycle Engine — the two commands of the README, and a few more.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run demo test lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	touch $(INSTALLED)

## make run: the engine on SQLite and the django-q2 ORM broker (web server + task cluster)
run: $(INSTALLED)
	$(PY) -m config.devenv
	$(PY) manage.py migrate --no-input
	$(PY) manage.py ensure_admin
	$(PY) manage.py runengine

## make demo: the engine with the Salesforce emulator, a mail sink and simulated traffic (own database)
demo: $(INSTALLED)
	$(PY) -m config.devenv
	$(PY) manage.py demo

## make test: the whole suite (SQLite by default; set DATABASE_URL=postgres://… for PostgreSQL)
test: $(INSTALLED)
	ENV_FILE= $(PY) -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

## make bench: the benchmark suite (PostgreSQL and Redis on 127.0.0.1), results and SUMMARY.md in bench/results/
## BENCH_ARGS="--quick" for a smoke run, "--only queue audit" for some, "--summary-only" to rebuild the table
bench: $(INSTALLED)
	$(PY) bench/suite.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
