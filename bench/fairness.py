"""Fairness: a tenant's backlog against another tenant's few short jobs, with and without a cap.

Tenant A submits `a_jobs` sleep jobs of `a_chunks` chunks; 2 s after the first of them started,
tenant B submits `b_jobs` one-chunk jobs; two worker processes (local/worker_process.py, as Lambda
would run the worker) drain the queue on moto's SQS. Once with A's plan at maxRunningJobs 1 (its
backlog then held in MySQL beyond twice the cap: chalicelib/holds.py), once with no cap that binds.
The figures: B's queue wait (started_at - created_at, from MySQL) p50 and p95, B's own run time, and
A's completed jobs per second over the same window. moto does not reorder by MessageGroupId (SQS fair
queues do on AWS), so what this shows is what the caps alone do. Also the worker's added cost of a
slot per job start: its Redis round trips (counted) and microseconds.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

from bench.env import Row, counted, quiet
from chalicelib import tenants
from chalicelib.hotstate import Slot
from chalicelib.runtime import Runtime
from local import services, worker_process

A, B = "tenant-a", "tenant-b"
STEP_MS = 10
#: The event source's long poll (local/worker_process.py): a job may wait this long for a receive.
POLL_SECONDS = 1.0


def run(env: Any, *, a_jobs: int, a_chunks: int, b_jobs: int, window_seconds: float) -> list[Row]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env.moto_url, region_name="us-east-1")
    bucket = f"bench-tenants-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    try:
        capped = _scenario(
            env, s3, bucket, cap=1, a_jobs=a_jobs, a_chunks=a_chunks, b_jobs=b_jobs, window=window_seconds
        )
        free = _scenario(
            env, s3, bucket, cap=None, a_jobs=a_jobs, a_chunks=a_chunks, b_jobs=b_jobs, window=window_seconds
        )
    finally:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    goal = 2 * capped["b_run_s"] + POLL_SECONDS
    rows = [
        Row(
            f"fairness: B's queue wait behind A's {a_jobs} x {a_chunks}-chunk backlog, A capped at 1 running",
            f"p50 {capped['b_wait_p50_s']:.2f} s, p95 {capped['b_wait_p95_s']:.2f} s",
            f"goal p95 <= 2 x B's run ({capped['b_run_s']:.2f} s) + one poll ({POLL_SECONDS:g} s) = {goal:.2f} s",
            "ok" if capped["b_wait_p95_s"] <= goal else "MISS",
            capped,
        ),
        Row(
            "fairness: the same without a cap that binds",
            f"p50 {free['b_wait_p50_s']:.2f} s, p95 {free['b_wait_p95_s']:.2f} s",
            f"x{free['b_wait_p95_s'] / max(capped['b_wait_p95_s'], 1e-3):.1f} the capped p95",
            "info",
            free,
        ),
        Row(
            "fairness: A's throughput, capped at 1 / not capped",
            f"{capped['a_jobs_per_s']:.1f} / {free['a_jobs_per_s']:.1f} jobs/s",
            f"over at least {window_seconds:g} s, until B finished",
            "info",
            {"capped": capped["a_jobs_per_s"], "free": free["a_jobs_per_s"]},
        ),
        _moto_receive(env, delayed=a_jobs),
        _slot_cost(env),
    ]
    return rows


def _scenario(
    env: Any, s3: Any, bucket: str, *, cap: int | None, a_jobs: int, a_chunks: int, b_jobs: int, window: float
):
    key = f"config/tenants-{cap}.json"
    plan = tenants.Limits(max_active_jobs=100_000, max_running_jobs=cap or 1000, max_timeout_seconds=3600)
    document = tenants.document({A: ("a", [A], plan), B: ("b", [B], tenants.Limits(100_000, 1000, 3600))})
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    queue_url = services.create_jobs_queue(env.sqs, f"jobs-fair-{uuid.uuid4().hex[:8]}")
    settings = replace(env.settings, jobs_queue_url=queue_url, tenants_url=f"s3://{bucket}/{key}")
    runtime = Runtime(settings)
    procs = []
    try:
        a_payload = {"steps": a_chunks, "stepMs": STEP_MS}
        with quiet():
            a_ids = [runtime.service.submit(A, {"type": "sleep", "payload": a_payload}).job.id for _ in range(a_jobs)]
        procs = [worker_process.start(settings, batch_size=10) for _ in range(2)]
        # From the first start of A's: a worker process's imports take seconds on a busy machine,
        # and B's wait is the queue's, not the workers' cold start.
        _wait_for_a_start(env, a_ids)
        started = time.monotonic()
        time.sleep(2)
        with quiet():
            b_payload = {"steps": 1, "stepMs": STEP_MS}
            b_ids = [runtime.service.submit(B, {"type": "sleep", "payload": b_payload}).job.id for _ in range(b_jobs)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if _done(env, b_ids) == b_jobs and time.monotonic() - started >= window:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        a_done = _done(env, a_ids)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)
        env.sqs.delete_queue(QueueUrl=queue_url)
    waits, runs = _times(env, b_ids)
    ordered = sorted(waits)
    return {
        "cap": cap,
        "b_wait_p50_s": statistics.median(ordered),
        "b_wait_p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "b_run_s": statistics.median(runs),
        "a_jobs_per_s": a_done / elapsed,
        "a_done": a_done,
        "seconds": elapsed,
    }


def _wait_for_a_start(env: Any, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = env.mysql()
        with conn, conn.cursor() as cur:
            placeholders = ", ".join(["%s"] * len(ids))
            cur.execute(f"SELECT 1 FROM jobs WHERE status <> 'PENDING' AND id IN ({placeholders}) LIMIT 1", tuple(ids))
            if cur.fetchone():
                return
        time.sleep(0.05)
    raise RuntimeError("no job of A started: are the worker processes up?")


def _done(env: Any, ids: list[str]) -> int:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED' AND id IN ({', '.join(['%s'] * len(ids))})",
            tuple(ids),
        )
        return cur.fetchone()[0]


def _times(env: Any, ids: list[str]) -> tuple[list[float], list[float]]:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT created_at, started_at, finished_at FROM jobs"
            f" WHERE id IN ({', '.join(['%s'] * len(ids))}) AND finished_at IS NOT NULL",
            tuple(ids),
        )
        rows = cur.fetchall()
    waits = [(started - created).total_seconds() for created, started, _ in rows]
    runs = [(finished - started).total_seconds() for _, started, finished in rows]
    return waits, runs


def _moto_receive(env: Any, *, delayed: int, receives: int = 10) -> Row:
    """What one ReceiveMessage costs on moto's server with `delayed` deferred messages in the queue
    (moto scans every message on each receive; SQS's cost does not grow with the queue)."""
    queue_url = services.create_jobs_queue(env.sqs, f"jobs-recv-{uuid.uuid4().hex[:8]}")
    try:
        env.sqs.send_message(QueueUrl=queue_url, MessageBody="visible")
        idle = _receive_ms(env.sqs, queue_url, receives)
        for start in range(0, delayed, 10):
            entries = [{"Id": str(i), "MessageBody": "x", "DelaySeconds": 900} for i in range(min(10, delayed - start))]
            env.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        loaded = _receive_ms(env.sqs, queue_url, receives)
    finally:
        env.sqs.delete_queue(QueueUrl=queue_url)
    return Row(
        f"moto: one ReceiveMessage with {delayed} delayed messages in the queue",
        f"{loaded:.0f} ms",
        f"{idle:.1f} ms with none: what a backlog deferred by re-sending costs each receive here (held: none)",
        "info",
        {"idle_ms": idle, "loaded_ms": loaded, "delayed": delayed},
    )


def _receive_ms(sqs: Any, queue_url: str, receives: int) -> float:
    started = time.perf_counter()
    for _ in range(receives):
        sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return (time.perf_counter() - started) / receives * 1000


def _slot_cost(env: Any, calls: int = 500, running: int = 19) -> Row:
    """What a job start pays for its slots: one take_slots of an owner's and a type's slot, with
    `running` other jobs holding them (a standard plan's maxRunningJobs is 20)."""
    hot = Runtime(env.settings).hot
    slots = [Slot("owner:bench-slot", running + 1), Slot("type:bench-slot", running + 1)]
    for i in range(running):
        hot.acquire(f"held-{i}", "t", lease_seconds=600)
        assert hot.take_slots(f"held-{i}", slots).taken
    times = []
    for i in range(calls):
        job_id = f"new-{i}"
        hot.acquire(job_id, "t", lease_seconds=600)
        if i == 0:
            with counted() as count:
                assert hot.take_slots(job_id, slots).taken
        else:
            started = time.perf_counter()
            assert hot.take_slots(job_id, slots).taken
            times.append(time.perf_counter() - started)
        hot.release(job_id, "t")  # ended: the next take drops it
    per_call_us = statistics.median(times) * 1e6
    return Row(
        f"slots: a job start's owner and type slots, {running} others running",
        f"{count.redis} Redis round trip, {per_call_us:.0f} us (median)",
        "budget: 1 round trip per job start, none per chunk",
        "ok" if count.redis == 1 else "MISS",
        {"round_trips": count.redis, "us": per_call_us},
    )
