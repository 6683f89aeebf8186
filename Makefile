# The two commands of the README: `make run` (set up and run locally) and `make test`.
# `make lint` runs ruff and mypy (settings in pyproject.toml), as CI does after `make test`.
# `make bench` prints the benchmark table (BENCH_ARGS=--quick for the small mode).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench setup services browser migrate clean deploy teardown

run: setup                     ## set up and run the whole system locally on http://127.0.0.1:8000
	$(PY) -m local.run $(RUN_ARGS)

test: setup services browser   ## run the test suite against real MariaDB, Redis and moto's server
	$(PY) -m pytest

lint: setup                    ## ruff (lint rules and format check) over the tree, mypy over chalicelib/, app.py and the client
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

BENCH_ARGS ?=

bench: setup services          ## benchmarks: our costs against the budgets, RQ and Celery side by side (BENCH_ARGS=--quick)
	$(PY) -m bench $(BENCH_ARGS)

setup: $(VENV)/.installed      ## the virtualenv with everything the project needs

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e . -e ./client
	touch $@

services:                      ## start MariaDB and Redis if they are not running
	bash local/services.sh

browser:                       ## Debian's Chromium, for the dashboard's browser tests
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: the dashboard tests will skip (install Debian's chromium package to run them)"

migrate: setup services        ## apply the SQL migrations to MYSQL_URL's database
	$(PY) -m chalicelib.schema --create-database

STAGE ?= dev
DEPLOY_ARGS ?=

deploy: setup                  ## deploy STAGE (dev|prod): infra stacks, Chalice, SQS mapping, usage plans
	$(PY) -m infra.deploy deploy --stage $(STAGE) $(DEPLOY_ARGS)

teardown: setup                ## remove everything `make deploy STAGE=...` created
	$(PY) -m infra.deploy teardown --stage $(STAGE) $(DEPLOY_ARGS)

clean:
	rm -rf $(VENV)
