"""What every benchmark shares: its own database, Redis db and queue; I/O counters; rows of the table.

A run makes `jobs_bench_<run>` in MySQL, claims a Redis database that holds no key (RQ and Celery
cannot share one prefix with us, so everything of the run lives in that database) and a queue on
moto's server; all are dropped at the end, whatever happened.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql
import redis

from chalicelib.config import Settings
from chalicelib.queue import JobQueue
from chalicelib.runtime import Runtime
from chalicelib.schema import migrate
from chalicelib.store import connect_args
from local import services
from local.eventsource import sqs_record

ROOT = Path(__file__).resolve().parent.parent
MYSQL_SERVER = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306")
REDIS_SERVER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
#: The caller every benchmark request comes from (an API key id, as API Gateway resolves it).
OWNER = "bench-key"
#: Marks the Redis database a run has claimed.
CLAIM_KEY = "bench:claimed-by"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-bench"


@dataclass
class Row:
    """One line of the table: a figure, its value, what it is held against, and the verdict."""

    figure: str
    value: str
    reference: str = ""
    #: ok / MISS against a budget; faster / slower against RQ or Celery; info otherwise.
    verdict: str = "info"
    #: Raw numbers, for --json and the test.
    data: dict[str, Any] = field(default_factory=dict)


def budget_row(figure: str, value: float, budget: float, *, unit: str = "", **data: Any) -> Row:
    """A counted figure against its budget: ok when it is at most the budget."""
    shown = f"{value:g}{unit}"
    return Row(
        figure,
        shown,
        f"budget {budget:g}{unit}",
        "ok" if value <= budget else "MISS",
        {"value": value, "budget": budget, **data},
    )


def ratio_row(
    figure: str,
    ours: float,
    theirs: dict[str, float],
    *,
    unit: str,
    higher_is_better: bool = False,
    fmt: str = "{:.3g}",
) -> Row:
    """Our figure against RQ's and Celery's: `theirs (ours/theirs)` for each, verdict against the best."""
    parts = [f"{name} {fmt.format(value)}{unit} (x{ours / value:.2g})" for name, value in theirs.items() if value]
    best = (max if higher_is_better else min)(theirs.values()) if theirs else None
    if best is None:
        verdict = "info"
    elif higher_is_better:
        verdict = "faster" if ours >= best else "slower"
    else:
        verdict = "faster" if ours <= best else "slower"
    return Row(figure, f"{fmt.format(ours)}{unit}", "; ".join(parts), verdict, {"ours": ours, **theirs})


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of the samples (seconds in, milliseconds out)."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p99 * 1000


# --- counting what the code sends -------------------------------------------------------------


@dataclass
class IoCount:
    """What one thread sent while counting: Redis round trips, MySQL statements, AWS calls."""

    redis: int = 0
    mysql: list[str] = field(default_factory=list)
    aws: list[str] = field(default_factory=list)
    #: Seconds spent in MySQL statements (sent to answered).
    mysql_seconds: float = 0.0

    @property
    def mysql_writes(self) -> list[str]:
        return [s for s in self.mysql if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE")]

    @property
    def inserts(self) -> int:
        return sum(1 for s in self.mysql if s.split()[0].upper() == "INSERT")


_counting = threading.local()
_installed = False


def install_counters() -> None:
    """Wrap the drivers once: redis-py's send (a pipeline or script call is one send, one round
    trip), PyMySQL's execute and botocore's API calls. They observe and call straight through."""
    global _installed
    if _installed:
        return
    import botocore.client

    send = redis.connection.Connection.send_packed_command
    execute = pymysql.cursors.Cursor.execute
    api_call = botocore.client.BaseClient._make_api_call

    def counted_send(self, *args, **kwargs):
        count = getattr(_counting, "count", None)
        if count is not None:
            count.redis += 1
        return send(self, *args, **kwargs)

    def counted_execute(self, query, args=None):
        count = getattr(_counting, "count", None)
        if count is None:
            return execute(self, query, args)
        count.mysql.append(query)
        started = time.perf_counter()
        try:
            return execute(self, query, args)
        finally:
            count.mysql_seconds += time.perf_counter() - started

    def counted_api_call(self, operation_name, api_params):
        count = getattr(_counting, "count", None)
        if count is not None:
            count.aws.append(operation_name)
        return api_call(self, operation_name, api_params)

    redis.connection.Connection.send_packed_command = counted_send
    pymysql.cursors.Cursor.execute = counted_execute
    botocore.client.BaseClient._make_api_call = counted_api_call
    _installed = True


@contextmanager
def counted() -> Iterator[IoCount]:
    """Count what this thread sends inside the block (other threads are not counted)."""
    install_counters()
    count = IoCount()
    _counting.count = count
    try:
        yield count
    finally:
        _counting.count = None


@contextmanager
def quiet() -> Iterator[None]:
    """Logs and EMF metrics go to a sink: formatted as in Lambda, but not onto the table."""
    from chalicelib import observability

    handler = observability.logger.registered_handler
    sink = io.StringIO()
    previous = handler.setStream(sink)
    try:
        with redirect_stdout(sink):
            yield
    finally:
        handler.setStream(previous)


# --- jobs and SQS records without a queue round trip ------------------------------------------


class RecordingSqs:
    """Stands in for the SQS client of a JobQueue: keeps each message as ReceiveMessage would give it,
    takes deletes, and counts each as the SQS request it stands for (IoCount.aws)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        #: Every request made of it, from any thread (IoCount counts only the counting thread's).
        self.requests: list[str] = []

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self._request("DeleteMessageBatch")
        self.deleted += [entry["ReceiptHandle"] for entry in Entries]
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self._request("SendMessageBatch")
        for entry in Entries:
            self._keep(entry["MessageBody"])
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}

    def send_message(self, *, QueueUrl: str, MessageBody: str, DelaySeconds: int = 0, **_: Any) -> dict:
        self._request("SendMessage")
        return {"MessageId": self._keep(MessageBody)}

    def _request(self, operation: str) -> None:
        self.requests.append(operation)
        _count_request(operation)

    def _keep(self, body: str) -> str:
        now = str(int(time.time() * 1000))
        message = {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": uuid.uuid4().hex,
            "Body": body,
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now,
                "SenderId": "BENCH",
                "ApproximateFirstReceiveTimestamp": now,
            },
        }
        self.messages.append(message)
        return message["MessageId"]


def _count_request(operation: str) -> None:
    count = getattr(_counting, "count", None)
    if count is not None:
        count.aws.append(operation)


def recording_runtime(settings: Settings) -> tuple[Runtime, RecordingSqs]:
    """A Runtime whose queue keeps messages in memory: for setting up thousands of jobs fast."""
    runtime = Runtime(settings)
    sqs = RecordingSqs()
    runtime.queue = JobQueue(lambda: sqs, "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-bench")
    return runtime, sqs


def submit_jobs(
    runtime: Runtime, sqs: RecordingSqs, count: int, payload: dict, *, owner: str = OWNER, job_type: str = "sleep"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Submit `count` jobs through the service; returns their ids and their Lambda SQS records."""
    start = len(sqs.messages)
    ids = [runtime.service.submit(owner, {"type": job_type, "payload": payload}).job.id for _ in range(count)]
    records = [sqs_record(m, queue_arn=QUEUE_ARN, region="us-east-1") for m in sqs.messages[start:]]
    return ids, records


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


# --- the run's own servers' space --------------------------------------------------------------


class BenchEnv:
    """This run's database, Redis database and queue, made on enter and dropped on exit."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.database = f"jobs_bench_{self.run_id}"
        self.mysql_url = f"{MYSQL_SERVER.rstrip('/')}/{self.database}"
        self.redis_url = ""
        self.settings: Settings | None = None
        self._moto = None
        self.moto_url = ""
        self.sqs: Any = None

    def __enter__(self) -> BenchEnv:
        services.use_fake_aws_credentials()
        try:
            migrate(self.mysql_url, create_database=True)
            self.redis_url = self._claim_redis_db()
            self._moto, self.moto_url = services.start_moto()
            self.sqs = services.sqs_client(self.moto_url)
            queue_url = services.create_jobs_queue(self.sqs, f"jobs-bench-{self.run_id}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.settings = Settings(
            mysql_url=self.mysql_url,
            redis_url=self.redis_url,
            redis_prefix=f"bench:{self.run_id}:",
            jobs_queue_url=queue_url,
            aws_endpoint_url=self.moto_url,
        )
        return self

    def _claim_redis_db(self) -> str:
        for db in range(15, 0, -1):
            client = redis.Redis.from_url(f"{REDIS_SERVER}/{db}")
            if client.dbsize() == 0 and client.set(CLAIM_KEY, self.run_id, nx=True):
                return f"{REDIS_SERVER}/{db}"
        raise RuntimeError("no empty Redis database (1-15) to run the benchmarks in")

    def __exit__(self, *exc: Any) -> None:
        conn = pymysql.connect(**{**connect_args(self.mysql_url), "database": None})
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        if self.redis_url:
            client = redis.Redis.from_url(self.redis_url)
            if client.get(CLAIM_KEY) in (self.run_id.encode(), None):
                client.flushdb()
        if self.sqs is not None and self.settings is not None:
            self.sqs.delete_queue(QueueUrl=self.settings.jobs_queue_url)
        if self._moto is not None:
            services.stop(self._moto)

    def server_versions(self) -> str:
        """The MySQL and Redis servers the figures come from."""
        conn = self.mysql()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            mysql = cur.fetchone()[0].split("-")[0]
            flavour = "MariaDB" if "mariadb" in cur.connection.get_server_info().lower() else "MySQL"
        info = redis.Redis.from_url(self.redis_url).info("server")
        return f"{flavour} {mysql}, Redis {info['redis_version']}"

    def mysql(self) -> pymysql.connections.Connection:
        """A connection of the benchmark's own (setting up, reading results), never counted."""
        return pymysql.connect(**connect_args(self.mysql_url))

    def with_settings(self, **changes: Any) -> Settings:
        return replace(self.settings, **changes)


def silence_libraries() -> None:
    """Keep third-party chatter (RQ, Celery, botocore) off the table."""
    for name in ("rq", "celery", "kombu", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def dumps(rows: list[Row]) -> str:
    return json.dumps([row.__dict__ for row in rows], indent=1, default=str)
