"""Scheduled jobs: how close to its runAt a job starts.

`jobs` one-chunk sleep jobs submitted with runAt 2 s ahead and then every second, two
worker processes (local/worker_process.py) long-polling moto's SQS, which honours DelaySeconds as
SQS does. The figure: started_at - runAt (from MySQL), p50 and p95; a start before runAt would be
a bug, so the earliest is printed too. Jobs due past SQS's 15 minutes take the same path once the
sweeper sends them with the delay left (sweeper.py): not its interval. Nothing here waits 15 minutes.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.env import Row, quiet
from chalicelib.runtime import Runtime
from local import services, worker_process

GOAL_SECONDS = 1.0
#: runAt of one job to the next: each is due alone, so the figure is the delay's, not the workers' queue.
SPACING_SECONDS = 1.0


def run(env: Any, *, jobs: int) -> list[Row]:
    queue_url = services.create_jobs_queue(env.sqs, f"jobs-sched-{uuid.uuid4().hex[:8]}")
    settings = replace(env.settings, jobs_queue_url=queue_url)
    runtime = Runtime(settings)
    procs = [worker_process.start(settings, batch_size=10) for _ in range(2)]
    try:
        with quiet():  # the worker processes are up (their imports take seconds on a busy machine)
            _wait_for(
                env, [runtime.service.submit("bench", {"type": "sleep", "payload": {"steps": 1}}).job.id], timeout=120
            )
        with quiet():
            first = datetime.now(UTC) + timedelta(seconds=2)
            moments = [first + timedelta(seconds=SPACING_SECONDS * i) for i in range(jobs)]
            body = {"type": "sleep", "payload": {"steps": 1}}
            ids = [runtime.service.submit("bench", {**body, "runAt": at.isoformat()}).job.id for at in moments]
        lateness = _wait_for(env, ids, timeout=60)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)
        env.sqs.delete_queue(QueueUrl=queue_url)
    ordered = sorted(lateness)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return [
        Row(
            f"scheduled: start - runAt of {jobs} jobs due from 2 s ahead, 1 s apart (SQS's delay)",
            f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, earliest {ordered[0]:+.2f} s",
            f"goal: never before runAt, p95 within {GOAL_SECONDS:g} s after it",
            "ok" if ordered[0] >= 0 and p95 <= GOAL_SECONDS else "MISS",
            {"p50_s": statistics.median(ordered), "p95_s": p95, "earliest_s": ordered[0], "jobs": jobs},
        )
    ]


def _wait_for(env: Any, ids: list[str], *, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = env.mysql()
        with conn, conn.cursor() as cur:
            placeholders = ", ".join(["%s"] * len(ids))
            cur.execute(
                f"SELECT started_at, run_at FROM jobs WHERE id IN ({placeholders}) AND status = 'COMPLETED'", ids
            )
            rows = cur.fetchall()
        if len(rows) == len(ids):
            return [(started - run_at).total_seconds() for started, run_at in rows if run_at is not None]
        time.sleep(0.2)
    raise RuntimeError(f"scheduled jobs not all completed within {timeout:g} s")
