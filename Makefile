# Tickhouse — the two commands a newcomer needs are `make demo` and `make test`.
# Everything installs itself on first use (venv from the pinned lock, Kafka jars from Maven Central,
# a PostgreSQL cluster from the machine's server binaries); state lives in .local/ (git-ignored).

SHELL := /bin/bash
VENV_BIN := .venv/bin

.PHONY: help install up down status env demo docs test test-unit bench soak lint

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## install what is missing: .venv, Kafka broker jars
	@bash scripts/bootstrap.sh

up: install  ## start the local stack (PostgreSQL, Kafka KRaft broker, Airflow) and the supervised services
	@$(VENV_BIN)/tickhouse up

down:  ## stop the local stack
	@if [ -x $(VENV_BIN)/tickhouse ]; then $(VENV_BIN)/tickhouse down; else echo "nothing installed, nothing to stop"; fi

status:  ## show each component and whether it answers
	@$(VENV_BIN)/tickhouse status

env:  ## print the effective configuration (shell-sourceable)
	@$(VENV_BIN)/tickhouse env

demo: install  ## run the pipeline end to end on the bundled data; leaves the stack running
	@$(VENV_BIN)/tickhouse demo

test: install  ## run the whole suite against real services (starts and stops what it needs)
	@bash scripts/run_tests.sh

test-unit: install  ## only the fast, pure tests (no services)
	@$(VENV_BIN)/pytest -q tests/unit

bench: install  ## run the benchmarks under bench/ and print their figures
	@bash scripts/run_bench.sh

soak: install  ## the 30-minute soak (bench/bench_soak.py) on the whole stack, services included; SOAK_ARGS=...
	@$(VENV_BIN)/tickhouse up && $(VENV_BIN)/python bench/bench_soak.py $(SOAK_ARGS)

lint: install  ## ruff, mypy and the import rule (import-linter contracts in pyproject.toml)
	@$(VENV_BIN)/ruff check . && $(VENV_BIN)/mypy && $(VENV_BIN)/lint-imports

docs: install  ## generate dbt's docs site (lineage, column docs) and serve it on 127.0.0.1 (DOCS_PORT)
	@$(VENV_BIN)/tickhouse docs
