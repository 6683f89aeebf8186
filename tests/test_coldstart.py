"""Each Lambda function imports only what it uses: what a cold start loads, in a fresh interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.coldstart import FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
#: Modules only the worker and the sweeper run.
WORKER_ONLY = {"chalicelib.worker", "chalicelib.chunks", "chalicelib.batch", "chalicelib.retry", "chalicelib.slots"}
#: Modules only the routes run.
ROUTES_ONLY = {"chalicelib.service", "chalicelib.batches", "chalicelib.bulk", "chalicelib.uploads"}
#: Modules no first event of either function loads: one route's, the sweeper's, the delivery function's.
NEITHER = {"chalicelib.openapi", "chalicelib.schedules", "chalicelib.sweeper", "chalicelib.webhooks.delivery"}


def loaded(statement: str, **env: str) -> set[str]:
    """The chalicelib modules (and redis, pymysql) in sys.modules after `statement`, in a new process."""
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}
    )
    assert result.returncode == 0, result.stderr
    return {name for name in json.loads(result.stdout) if name.split(".")[0] in ("chalicelib", "redis", "pymysql")}


@pytest.fixture(autouse=True)
def _on_demand(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)


def test_the_api_functions_first_request_loads_neither_the_worker_nor_the_sweeper():
    modules = loaded(FUNCTIONS["API"])

    assert {"chalicelib.service", "chalicelib.store", "chalicelib.hotstate", "redis", "pymysql"} <= modules
    assert modules & (WORKER_ONLY | NEITHER) == set()


def test_the_workers_first_batch_loads_none_of_the_routes_services():
    modules = loaded(FUNCTIONS["worker"])

    assert {"chalicelib.worker", "chalicelib.chunks", "chalicelib.store", "chalicelib.hotstate"} <= modules
    assert modules & (ROUTES_ONLY | NEITHER) == set()


def test_importing_the_app_on_demand_connects_nothing_and_loads_no_client():
    # Lambda's init of an on-demand environment: the routes and handlers, no Redis or MySQL client yet
    modules = loaded("import app")

    assert "chalicelib.http" in modules
    assert modules & {"redis", "pymysql", "chalicelib.store", "chalicelib.hotstate"} == set()


@pytest.mark.parametrize("kind", ["provisioned-concurrency", "snap-start"])
def test_an_environment_initialised_ahead_of_events_loads_every_module_at_init(kind):
    modules = loaded("import app", AWS_LAMBDA_INITIALIZATION_TYPE=kind)

    assert WORKER_ONLY | ROUTES_ONLY | NEITHER <= modules
