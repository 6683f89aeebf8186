# The two commands of the README: `make run` (set up and run locally) and `make test`.
# `make lint` runs ruff and mypy (settings in pyproject.toml), as CI does after `make test`.
# `make bench` prints the benchmark table (BENCH_ARGS=--quick for the small mode).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
# pytest-xdist workers for the parallel part of `make test` (each has its own database, Redis prefix
# and moto server: tests/conftest.py). TEST_ARGS are passed to both parts, e.g. TEST_ARGS='-x'.
TEST_WORKERS ?= 2
TEST_ARGS ?=

.PHONY: run test lint bench setup services browser migrate clean deploy teardown

run: setup                     ## set up and run the whole system locally on http://127.0.0.1:8000
	$(PY) -m local.run $(RUN_ARGS)

# Two parts: every test but those marked `alone` over TEST_WORKERS processes, a file per worker at a
# time; then the `alone` ones (the chaos run, the quick bench: many processes each, with timeouts of
# their own) by themselves, with the machine to themselves. Both parts always run; a part that
# TEST_ARGS leaves without tests (pytest's exit 5) fails nothing unless both are.
test: setup services browser   ## run the test suite against real MariaDB, Redis and moto's server
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not alone" $(TEST_ARGS); a=$$?; \
	$(PY) -m pytest -m alone $(TEST_ARGS); b=$$?; \
	if [ $$a -eq 5 ] && [ $$b -eq 5 ]; then exit 5; fi; \
	for code in $$a $$b; do [ $$code -eq 0 ] || [ $$code -eq 5 ] || exit $$code; done

lint: setup                    ## ruff (lint rules and format check) over the tree, mypy over chalicelib/, app.py and the client
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

BENCH_ARGS ?=

bench: setup services          ## benchmarks: our costs against the budgets, RQ and Celery side by side (BENCH_ARGS=--quick)
	$(PY) -m bench $(BENCH_ARGS)

setup: $(VENV)/.installed      ## the virtualenv with everything the project needs

# uv installs the same pinned requirements as pip (same resolution; pip stays, at its newest release
# that chalice allows, for `chalice package`), in seconds: it downloads in parallel. pip's serial
# install took 3-4 minutes here. It compiles the bytecode up front (--compile-bytecode, about 25 s):
# where PYTHONDONTWRITEBYTECODE is set, as on these machines, Python would otherwise compile every
# library again in every process, and the suite starts hundreds (`import moto.server, boto3, redis`
# took 2.9 s without the venv's bytecode, 0.8 s with it).
UV_VERSION := 0.13.9

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q uv==$(UV_VERSION)
	$(UV) pip install -q --compile-bytecode --python $(PY) --upgrade-package pip -r requirements-dev.txt
	$(UV) pip install -q --python $(PY) --no-deps -e . -e ./client
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
