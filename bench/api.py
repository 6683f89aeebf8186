"""The routes' costs: Redis round trips, MySQL statements, SQS calls and handler time per request.

Each request goes through the Chalice app as Lambda invokes it, `app.app(event, context)`, with an
API Gateway proxy event whose `requestContext.identity.apiKeyId` names the caller (http.owner).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from typing import Any

import redis

from bench.env import OWNER, IoCount, Row, budget_row, counted, percentiles, quiet, recording_runtime, submit_jobs
from chalicelib import runtime as runtime_module
from chalicelib.hotstate import HotState
from chalicelib.runtime import Runtime
from local.eventsource import LambdaContext

#: A job that runs long enough to be cancelled while RUNNING (a chunk a second).
LONG_JOB = {"steps": 30, "stepMs": 1000}


def proxy_event(
    method: str,
    resource: str,
    path: str,
    *,
    path_params: dict | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as the api Lambda receives it."""
    headers = {"content-type": "application/json", "x-api-key": "bench-key-value", "host": "bench.local"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None if query is None else {k: [v] for k, v in query.items()},
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "bench",
            "identity": {"apiKeyId": OWNER, "apiKey": "bench-key-value", "sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


class Caller:
    """Invokes the app's routes and measures each call: time and what it sent."""

    def __init__(self, app: Any):
        self._app = app
        self._context = LambdaContext(timeout_seconds=30, function_name="jobs-dev-api_handler")

    def call(self, event: dict[str, Any], expect: int) -> tuple[dict, float, IoCount]:
        with counted() as count:
            started = time.perf_counter()
            reply = self._app(event, self._context)
            elapsed = time.perf_counter() - started
        if reply["statusCode"] != expect:
            raise RuntimeError(f"{event['httpMethod']} {event['path']}: {reply['statusCode']} {reply['body'][:300]}")
        return json.loads(reply["body"]), elapsed, count

    def post(self, body: dict) -> tuple[dict, float, IoCount]:
        return self.call(proxy_event("POST", "/jobs", "/jobs", body=body), 202)

    def get(self, job_id: str) -> tuple[dict, float, IoCount]:
        return self.call(proxy_event("GET", "/jobs/{job_id}", f"/jobs/{job_id}", path_params={"job_id": job_id}), 200)

    def get_many(self, job_ids: list[str]) -> tuple[dict, float, IoCount]:
        return self.call(proxy_event("GET", "/jobs", "/jobs", query={"ids": ",".join(job_ids)}), 200)

    def delete(self, job_id: str, expect: int) -> tuple[dict, float, IoCount]:
        return self.call(
            proxy_event("DELETE", "/jobs/{job_id}", f"/jobs/{job_id}", path_params={"job_id": job_id}), expect
        )


class Samples:
    """Times and counts of many calls of one kind of request."""

    def __init__(self, name: str):
        self.name = name
        self.times: list[float] = []
        self.counts: list[IoCount] = []

    def add(self, result: tuple[dict, float, IoCount]) -> dict:
        body, elapsed, count = result
        self.times.append(elapsed)
        self.counts.append(count)
        return body

    def redis(self) -> int:
        return max(c.redis for c in self.counts)

    def mysql(self) -> int:
        return max(len(c.mysql) for c in self.counts)

    def spread(self, of) -> str:
        values = sorted({of(c) for c in self.counts})
        return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"

    def time_row(self, note: str = "") -> Row:
        p50, p99 = percentiles(self.times)
        return Row(
            f"{self.name}: handler p50 / p99",
            f"{p50:.2f} / {p99:.2f} ms",
            f"{len(self.times)} calls{note}",
            "info",
            {"p50_ms": p50, "p99_ms": p99, "calls": len(self.times)},
        )

    def io_row(self) -> Row:
        value = f"{self.spread(lambda c: c.redis)} Redis, {self.spread(lambda c: len(c.mysql))} MySQL"
        return Row(
            f"{self.name}: round trips per request", value, "", "info", {"redis": self.redis(), "mysql": self.mysql()}
        )


def _forget_hot_state(client: redis.Redis, keys: HotState, job_id: str) -> None:
    """Drop the job's keys from Redis, as a flush or an expiry would."""
    client.delete(*keys.keys_of(job_id))


def run(env, *, calls: int) -> list[Row]:
    import app as app_module

    runtime = Runtime(env.settings)
    runtime_module.use(runtime)
    caller = Caller(app_module.app)
    setup_runtime, setup_sqs = recording_runtime(env.settings)
    raw = redis.Redis.from_url(env.redis_url)
    keys = runtime.hot  # names the Redis keys the fallback figures drop
    try:
        with quiet():
            rows = _post_and_get(caller, calls, raw, keys)
            rows += _get_many(caller, max(10, calls // 10))
            rows += _finished_fallback(caller, max(20, calls // 5), runtime, setup_runtime, setup_sqs, raw, keys)
            rows += _cancel(caller, calls, min(50, max(10, calls // 10)), runtime, setup_runtime, setup_sqs)
    finally:
        runtime_module.use(None)
    return rows


def _post_and_get(caller: Caller, calls: int, raw: redis.Redis, keys: HotState) -> list[Row]:
    body = {"type": "sleep", "payload": {"steps": 10, "stepMs": 0}}
    for _ in range(5):  # warm: connections made, scripts loaded, boto3 imported
        caller.get(caller.post(body)[0]["jobId"])
    post = Samples("POST /jobs")
    ids = [post.add(caller.post(body))["jobId"] for _ in range(calls)]
    hot = Samples("GET /jobs/{id} hot")
    for i in range(calls):
        hot.add(caller.get(ids[i % len(ids)]))
    fallback = Samples("GET /jobs/{id} fallback (active job)")
    for i in range(calls):
        _forget_hot_state(raw, keys, ids[i])
        fallback.add(caller.get(ids[i]))
    sqs_alone = _sqs_send_alone(runtime_module.get(), calls)
    inserts = max(c.inserts for c in post.counts)
    sends = max(c.aws.count("SendMessage") for c in post.counts)
    return [
        budget_row("GET /jobs/{id} hot: Redis round trips", hot.redis(), 1),
        budget_row("GET /jobs/{id} hot: MySQL statements", hot.mysql(), 0),
        hot.time_row(),
        fallback.io_row(),
        fallback.time_row(" (MySQL read; nothing to put back while active)"),
        budget_row("POST /jobs: MySQL inserts", inserts, 1, statements=post.mysql()),
        Row(
            "POST /jobs: MySQL statements",
            str(post.mysql()),
            "budget: 1 insert",
            "ok" if post.mysql() <= 1 else "MISS",
            {"value": post.mysql()},
        ),
        budget_row("POST /jobs: Redis round trips", post.redis(), 1),
        budget_row("POST /jobs: SQS sends", sends, 1),
        post.time_row(f" (SQS is moto's server on loopback: a SendMessage alone p50 {sqs_alone:.2f} ms)"),
    ]


def _get_many(caller: Caller, repeats: int, jobs: int = 100) -> list[Row]:
    """`GET /jobs?ids=` of 100 hot jobs against 100 single GETs of the same jobs, in the same run."""
    body = {"type": "sleep", "payload": {"steps": 10, "stepMs": 0}}
    ids = [caller.post(body)[0]["jobId"] for _ in range(jobs)]
    many = Samples(f"GET /jobs?ids= of {jobs} hot jobs")
    singles: list[float] = []
    for _ in range(repeats):
        if len(many.add(caller.get_many(ids))["jobs"]) != jobs:
            raise RuntimeError("GET /jobs?ids= left jobs out")
        singles.append(sum(caller.get(job_id)[1] for job_id in ids))
    ratio = statistics.median(many.times) / statistics.median(singles)
    return [
        budget_row(f"GET /jobs?ids= of {jobs} hot jobs: Redis round trips", many.redis(), 1),
        budget_row(f"GET /jobs?ids= of {jobs} hot jobs: MySQL statements", many.mysql(), 0),
        Row(
            f"GET /jobs?ids= of {jobs} hot jobs: time against {jobs} single GETs",
            f"x{ratio:.2f}",
            f"p50 {statistics.median(many.times) * 1000:.2f} ms against {statistics.median(singles) * 1000:.2f} ms"
            f" ({repeats} rounds)",
            "faster" if ratio < 1 else "slower",
            {
                "ratio": ratio,
                "many_ms": statistics.median(many.times) * 1000,
                "singles_ms": statistics.median(singles) * 1000,
            },
        ),
    ]


def _sqs_send_alone(runtime: Runtime, calls: int) -> float:
    """p50 ms of a bare SendMessage to the same queue: what moto adds to POST /jobs."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=runtime.settings.aws_endpoint_url, region_name="us-east-1")
    times = []
    for _ in range(min(calls, 200)):
        started = time.perf_counter()
        sqs.send_message(QueueUrl=runtime.settings.jobs_queue_url, MessageBody='{"jobId":"bench"}')
        times.append(time.perf_counter() - started)
    return percentiles(times)[0]


def _finished_fallback(
    caller: Caller, calls: int, runtime: Runtime, setup_runtime: Runtime, setup_sqs, raw: redis.Redis, keys: HotState
) -> list[Row]:
    """GET of a finished job Redis lost: read from MySQL, and put back for the next poll."""
    ids, records = submit_jobs(setup_runtime, setup_sqs, calls, {"steps": 1, "stepMs": 0})
    for start in range(0, len(records), 10):
        runtime.worker.handle_batch(records[start : start + 10], LambdaContext(timeout_seconds=900))
    samples = Samples("GET /jobs/{id} fallback (finished job)")
    for job_id in ids:
        _forget_hot_state(raw, keys, job_id)
        view = samples.add(caller.get(job_id))
        if view["status"] != "COMPLETED":
            raise RuntimeError(f"job {job_id} is {view['status']}, not COMPLETED")
    again = Samples("GET after the fallback")
    again.add(caller.get(ids[0]))
    return [
        samples.io_row(),
        samples.time_row(" (then put back in Redis)"),
        Row(
            "GET /jobs/{id} after a fallback: round trips",
            f"{again.redis()} Redis, {again.mysql()} MySQL",
            "back on the hot path",
            "ok" if (again.redis(), again.mysql()) == (1, 0) else "MISS",
            {"redis": again.redis(), "mysql": again.mysql()},
        ),
    ]


def _cancel(caller: Caller, calls: int, running: int, runtime: Runtime, setup_runtime: Runtime, setup_sqs) -> list[Row]:
    ids, _ = submit_jobs(setup_runtime, setup_sqs, calls, {"steps": 10, "stepMs": 0})
    pending = Samples("DELETE /jobs/{id} pending")
    for job_id in ids:
        pending.add(caller.delete(job_id, 200))
    running_samples = Samples("DELETE /jobs/{id} running")
    ids, records = submit_jobs(setup_runtime, setup_sqs, running, LONG_JOB)
    # Each job RUNNING in a worker thread of its own (the worker's I/O is not counted: another thread).
    threads = [
        threading.Thread(
            target=runtime.worker.handle_batch, args=([r], LambdaContext(timeout_seconds=900)), daemon=True
        )
        for r in records
    ]
    for thread in threads:
        thread.start()
    for job_id in ids:
        _wait_running(runtime, job_id)
        view = running_samples.add(caller.delete(job_id, 202))
        if not view["cancelRequested"]:
            raise RuntimeError(f"job {job_id}: cancel not requested")
    for thread in threads:
        thread.join(timeout=10)
    return [
        pending.io_row(),
        pending.time_row(),
        running_samples.io_row(),
        running_samples.time_row(" (cancel flag in MySQL and Redis)"),
    ]


def _wait_running(runtime: Runtime, job_id: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while runtime.service.get(OWNER, job_id).job.status.value != "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not start within {timeout}s")
        time.sleep(0.01)
