"""Fixtures: every test talks to real MariaDB, real Redis and moto's server over HTTP.

Each run gets its own database (`jobs_test_<run>`), Redis key prefix (`test:<run>:`) and queue,
cleaned before every test and dropped at the end, so runs never collide. Under pytest-xdist
(`make test` runs `-n 2`) each worker is a run of its own: `<run>` is the run's id and the worker's
(`1a2b3c4d_gw0`), and each worker starts its own moto server. A missing MySQL or Redis
skips the tests on a laptop and fails them in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pymysql
import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import runtime as runtime_module
from chalicelib.config import Settings
from chalicelib.runtime import Runtime
from chalicelib.schema import migrate
from chalicelib.store import connect_args
from chalicelib.tenants import DOCUMENT_KEY
from local import services
from local.eventsource import EventSource

_PROCESS_RUN = uuid.uuid4().hex[:8]
#: The test job type, loaded as a deployment loads its own types (JOB_TYPES).
PROBE_MODULE = "tests.support.probe"
MYSQL_SERVER = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
services.use_fake_aws_credentials()


def pytest_collection_modifyitems(items) -> None:
    """Every test its own node id. pytest-xdist's file scheduling keys tests by id and runs only one
    of several that share it: schemathesis names its cases `test_fuzzing...[GET /jobs]` but gives
    them all the function's id, and 10 of the 11 fuzzed operations were silently skipped."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1:
            # pytest 9 keeps the id as a NodeId built from the function's name; no public way to set it.
            item._id = type(item._id).parse(f"{item.nodeid.rpartition('::')[0]}::{item.name}")
    shared = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(f"tests share a node id, so pytest-xdist would run only one of each: {shared}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that drove a local runtime (tests/support/runtime.py) reports the tail of its
    log: the worker's and the sweeper's side of what the test saw, which CI keeps nowhere else."""
    report = yield
    local = getattr(item, "funcargs", {}).get("runtime")
    log = getattr(local, "log", None)
    if report.failed and log is not None and log.exists():
        report.sections.append(("local runtime log (last 200 lines)", "\n".join(log.read_text().splitlines()[-200:])))
    return report


def _require(what: str, check) -> None:
    try:
        check()
    except Exception as exc:
        message = f"{what} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def moto_url():
    proc, url = services.start_moto()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def run_id() -> str:
    """This run's name: under pytest-xdist the run's id and the worker's (`1a2b3c4d_gw0`).

    Read in a fixture, not at import: xdist sets these variables after a worker has loaded conftest.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        return f"{os.environ['PYTEST_XDIST_TESTRUNUID'][:8]}_{worker}"
    return _PROCESS_RUN


@pytest.fixture(scope="session")
def run_settings(moto_url, run_id) -> Settings:
    """This run's database and key prefix (the queue comes per test, from `settings`)."""
    mysql_url = f"{MYSQL_SERVER.rstrip('/')}/jobs_test_{run_id}"
    _require("MySQL", lambda: migrate(mysql_url, create_database=True))
    _require("Redis", lambda: redis.Redis.from_url(REDIS_URL).ping())
    yield Settings(
        mysql_url=mysql_url,
        redis_url=REDIS_URL,
        redis_prefix=f"test:{run_id}:",
        aws_endpoint_url=moto_url,
        job_types=(PROBE_MODULE,),
    )
    conn = pymysql.connect(**{**connect_args(mysql_url), "database": None})
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `jobs_test_{run_id}`")
    _delete_prefix(redis.Redis.from_url(REDIS_URL), f"test:{run_id}:")


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def settings(run_settings, run_id, sqs, request) -> Settings:
    """Every test starts with no jobs, no hot state and a queue of its own."""
    conn = pymysql.connect(**connect_args(run_settings.mysql_url))
    with conn, conn.cursor() as cur:
        for table in ("jobs", "batches", "job_dependencies", "schedules"):
            cur.execute(f"DELETE FROM {table}")
    _delete_prefix(redis.Redis.from_url(run_settings.redis_url), run_settings.redis_prefix)
    # A queue per test: SQS allows one PurgeQueue a minute, and leftovers must not leak across tests.
    queue_url = services.create_jobs_queue(sqs, f"jobs-{run_id}-{uuid.uuid4().hex[:8]}")
    yield replace(run_settings, jobs_queue_url=queue_url)
    installed = runtime_module.installed()
    if installed is not None:
        installed.close()  # not left for the garbage collector: a later test counts connections
    runtime_module.use(None)
    sqs.delete_queue(QueueUrl=queue_url)


@pytest.fixture(scope="session")
def sqs(moto_url):
    return services.sqs_client(moto_url)


@pytest.fixture
def s3(moto_url):
    import boto3

    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    """A bucket of this test alone, emptied and deleted after it."""
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def put_tenants(s3, bucket: str, document: dict | bytes) -> str:
    """A tenants document (chalicelib/tenants.py) in moto's S3, as the deploy writes it; its TENANTS_URL."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    s3.put_object(Bucket=bucket, Key=DOCUMENT_KEY, Body=body)
    return f"s3://{bucket}/{DOCUMENT_KEY}"


@pytest.fixture
def rt(settings) -> Iterator[Runtime]:
    """The runtime the app's routes and handlers use in this test."""
    runtime = Runtime(settings)
    runtime_module.use(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def mysql(settings):
    """A separate MySQL connection for the test's own checks (dict rows)."""
    conn = pymysql.connect(cursorclass=pymysql.cursors.DictCursor, **connect_args(settings.mysql_url))
    yield conn
    conn.close()


@pytest.fixture
def redis_client(settings):
    return redis.Redis.from_url(settings.redis_url, decode_responses=True)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    json: Any


class Api:
    """The routes over Chalice's test client, which builds API Gateway proxy events."""

    def __init__(self, client: Client):
        self._http = client.http

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "key-a",
        body: Any = None,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            headers["x-api-key"] = key
        if body is not None:
            raw = json.dumps(body)
        response = getattr(self._http, method.lower())(path, headers=headers, body=raw or b"")
        text = response.body.decode() if response.body else ""
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            json.loads(text) if text else None,
        )

    def submit(
        self,
        job_type: str = "sleep",
        payload: dict | None = None,
        *,
        key: str = "key-a",
        headers: dict | None = None,
        **options: Any,
    ) -> Reply:
        return self.request(
            "POST", "/jobs", key=key, headers=headers, body={"type": job_type, "payload": payload or {}, **options}
        )

    def get(self, job_id: str, *, key: str = "key-a") -> Reply:
        return self.request("GET", f"/jobs/{job_id}", key=key)

    def cancel(self, job_id: str, *, key: str = "key-a") -> Reply:
        return self.request("DELETE", f"/jobs/{job_id}", key=key)


@pytest.fixture
def api(rt) -> Api:
    with Client(app_module.app) as client:
        yield Api(client)


@pytest.fixture
def events(rt, sqs, settings) -> EventSource:
    """The SQS event source of the worker Lambda, fed from the test's queue."""
    return EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test alone, for what must not touch the shared one (FLUSHALL, stops)."""
    proc, port = services.start_redis(tmp_path)
    yield f"redis://127.0.0.1:{port}/0"
    services.stop(proc)


@pytest.fixture
def log_output():
    """What the Powertools log handler writes (to stdout, in Lambda), captured."""
    import io

    from chalicelib import observability

    handler = observability.logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


from tests.support.probe import Probe, SimulatedCrash  # noqa: E402, F401


@dataclass
class IoCounts:
    redis_round_trips: int = 0
    mysql_statements: list[str] = None

    def reset(self) -> None:
        self.redis_round_trips = 0
        self.mysql_statements = []

    @property
    def mysql_writes(self) -> list[str]:
        return [s for s in self.mysql_statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


@pytest.fixture
def io_counts(monkeypatch) -> IoCounts:
    """Counts what the code sends: Redis round trips (a pipeline or script is one) and MySQL statements.

    The wrappers call straight through to redis-py and PyMySQL: they observe, they fake nothing.
    """
    counts = IoCounts()
    counts.reset()
    send = redis.connection.Connection.send_packed_command
    execute = pymysql.cursors.Cursor.execute

    def counted_send(self, *args, **kwargs):
        counts.redis_round_trips += 1
        return send(self, *args, **kwargs)

    def counted_execute(self, query, args=None):
        counts.mysql_statements.append(query)
        return execute(self, query, args)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted_send)
    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counted_execute)
    return counts


def wait_until(predicate, *, timeout: float = 10.0, interval: float = 0.01):
    """Poll until predicate() is truthy; returns its value, or fails the test."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


def poll_until_finished(events, api, job_id, *, timeout: float = 20.0) -> dict:
    """Let the worker take records until the job ends; its view, or the test fails."""
    import time

    from chalicelib.models import JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.poll_once(wait_seconds=1)
        job = api.get(job_id).json
        if JobStatus(job["status"]).terminal:
            return job
    pytest.fail(f"job {job_id} did not finish")
