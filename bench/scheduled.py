"""Scheduled jobs: how close to its runAt a job starts; recurring schedules: the sweeper's cost per pass.

`jobs` one-chunk sleep jobs submitted with runAt 2 s ahead and then every second, two
worker processes (local/worker_process.py) long-polling moto's SQS, which honours DelaySeconds as
SQS does. The figure: started_at - runAt (from MySQL), p50 and p95; a start before runAt would be
a bug, so the earliest is printed too. Jobs due past SQS's 15 minutes wait in MySQL until the
sweeper sends them with the delay left (sweeper.py): measured on jobs submitted an hour ahead whose
runAt is then moved to 2 s from now (as if the hour had passed) before one sweeper pass. Nothing
here waits 15 minutes.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql

from bench.env import Row, counted, quiet
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
        with quiet():
            late = _past_sqs_delay(env, runtime, jobs)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)
        env.sqs.delete_queue(QueueUrl=queue_url)
    return [
        _row(f"scheduled: start - runAt of {jobs} jobs due from 2 s ahead, 1 s apart (SQS's delay)", lateness),
        _row(
            f"scheduled (past SQS's 15 minutes): start - runAt of {jobs} jobs the sweeper sent, 1 s apart",
            late,
        ),
    ]


def _past_sqs_delay(env: Any, runtime: Runtime, jobs: int) -> list[float]:
    """Jobs submitted an hour ahead wait in MySQL (unsent); their runAt is then moved to 2 s from now,
    1 s apart, as if the hour had passed, and one sweeper pass sends them with the delay left."""
    body = {"type": "sleep", "payload": {"steps": 1}}
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ids = [runtime.service.submit("bench", {**body, "runAt": later}).job.id for _ in range(jobs)]
    first = datetime.now(UTC) + timedelta(seconds=2)
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        for i, job_id in enumerate(ids):
            due = (first + timedelta(seconds=SPACING_SECONDS * i)).replace(tzinfo=None)
            cur.execute("UPDATE jobs SET run_at = %s WHERE id = %s AND sent = FALSE", (due, job_id))
        conn.commit()
    runtime.sweeper.sweep()
    return _wait_for(env, ids, timeout=60)


def _row(figure: str, lateness: list[float]) -> Row:
    ordered = sorted(lateness)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Row(
        figure,
        f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, earliest {ordered[0]:+.2f} s",
        f"goal: never before runAt, p95 within {GOAL_SECONDS:g} s after it",
        "ok" if ordered[0] >= 0 and p95 <= GOAL_SECONDS else "MISS",
        {"p50_s": statistics.median(ordered), "p95_s": p95, "earliest_s": ordered[0], "jobs": len(ordered)},
    )


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


#: The owner of the schedules benchmark's rows (deleted at its end, so the areas after it see none).
SCHEDULES_OWNER = "bench-schedules"


def sweep_cost(env: Any, *, schedules: int, jobs: int) -> list[Row]:
    """The sweeper's cost per pass with `schedules` due schedules and `jobs` SCHEDULED jobs waiting
    (due in two days): SQL statements (counted, held to a budget) and milliseconds (printed).

    Passes of the schedules rule until every schedule has its occurrence's job (at most
    `sweep_max_rows` a pass), then a pass with none due, then a whole sweep with nothing due. A pass's
    time is mostly MySQL's commits: two autocommitted writes per schedule."""
    from chalicelib.schedules import LOOKAHEAD_SECONDS

    runtime = Runtime(env.settings)
    with quiet():
        runtime.sweeper.sweep()  # connections made and job types loaded: a warm container's pass is measured
        runtime.service.check_template(SCHEDULES_OWNER, {"type": "sleep"})
    now = datetime.now(UTC).replace(microsecond=0)
    _seed(env, now, schedules=schedules, jobs=jobs)
    limit = env.settings.sweep_max_rows
    try:
        with quiet():
            busy = []
            while True:
                with counted() as count:
                    started = time.perf_counter()
                    report = runtime.schedules.fire_due(now, limit=limit)
                    elapsed = time.perf_counter() - started
                if not report.fired:
                    idle = (len(count.mysql), elapsed)
                    break
                busy.append((report.fired, len(count.mysql), elapsed))
            _drop_made(env)  # the occurrences' jobs are due: the whole sweep is measured with nothing to send
            with counted() as count:
                started = time.perf_counter()
                runtime.sweeper.sweep()
                sweep = (len(count.mysql), time.perf_counter() - started)
            plan = _explain_due(env, now + timedelta(seconds=LOOKAHEAD_SECONDS), limit)
    finally:
        conn = env.mysql()
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM jobs WHERE owner = %s", (SCHEDULES_OWNER,))
            cur.execute("DELETE FROM schedules WHERE owner = %s", (SCHEDULES_OWNER,))
    made, statements = sum(b[0] for b in busy), sum(b[1] for b in busy)
    per_pass_ms = [round(b[2] * 1000, 1) for b in busy]
    waiting = f"{schedules:,} due schedules, {jobs:,} SCHEDULED jobs waiting"
    return [
        Row(
            f"schedules: passes making the occurrence jobs of {waiting} (at most {limit} a pass)",
            f"{made} jobs in {len(busy)} passes, {statements} statements, {' / '.join(map(str, per_pass_ms))} ms",
            f"budget per pass: 1 indexed range + 2 per schedule (insert, guarded advance) = {1 + 2 * limit}",
            "ok" if made == schedules and statements == len(busy) + 2 * made else "MISS",
            {"made": made, "passes": len(busy), "statements": statements, "per_pass_ms": per_pass_ms},
        ),
        Row(
            f"schedules: a pass with none due, {waiting.replace('due ', '')}",
            f"{idle[0]} statement, {idle[1] * 1000:.2f} ms; the range uses {plan['key']}, {plan['rows']} rows read",
            "budget: 1 statement, on ix_schedules_next_run (no full scan)",
            "ok" if idle[0] == 1 and plan["key"] == "ix_schedules_next_run" else "MISS",
            {"statements": idle[0], "ms": idle[1] * 1000, "key": plan["key"], "rows": plan["rows"]},
        ),
        Row(
            f"sweeper: a whole pass with nothing due, {jobs:,} SCHEDULED jobs and {schedules:,} schedules",
            f"{sweep[0]} statements, {sweep[1] * 1000:.1f} ms",
            "info: each rule one bounded, indexed range",
            "info",
            {"statements": sweep[0], "ms": sweep[1] * 1000},
        ),
    ]


def _drop_made(env: Any) -> None:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM jobs WHERE owner = %s AND idempotency_key IS NOT NULL", (SCHEDULES_OWNER,))
        conn.commit()


def _seed(env: Any, now: datetime, *, schedules: int, jobs: int) -> None:
    """`jobs` SCHEDULED jobs due in two days and `schedules` schedules due now, in multi-row inserts."""
    from chalicelib.models import new_job_id

    later = now + timedelta(days=2)
    # Hourly, half an hour from now: each schedule's following occurrence is far past the lookahead,
    # so the pass after the busy ones finds none due whatever the minute the benchmark runs in.
    minute_away = f"{(now.minute + 30) % 60} * * * *"
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        for start in range(0, jobs, 1000):
            rows = [
                (new_job_id(), SCHEDULES_OWNER, "sleep", "SCHEDULED", '{"steps": 1}', 3, 600, later, False, now, now)
                for _ in range(min(1000, jobs - start))
            ]
            cur.executemany(
                "INSERT INTO jobs (id, owner, type, status, payload, max_attempts, timeout_seconds, run_at, sent,"
                " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        rows = [
            (
                new_job_id(),
                SCHEDULES_OWNER,
                minute_away,
                "UTC",
                '{"type": "sleep", "payload": {"steps": 1}}',
                "skip",
                now + timedelta(seconds=i % 60),
                now,
                now,
            )
            for i in range(schedules)
        ]
        cur.executemany(
            "INSERT INTO schedules (id, owner, cron, timezone, job, overlap, next_run_at, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        conn.commit()


def _explain_due(env: Any, horizon: datetime, limit: int) -> dict[str, Any]:
    """The index MySQL uses for the schedules rule's range, and the rows it expects to read."""
    conn = env.mysql()
    with conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(
            "EXPLAIN SELECT id FROM schedules WHERE next_run_at <= %s ORDER BY next_run_at LIMIT %s", (horizon, limit)
        )
        plan = cur.fetchone()
    return {"key": plan["key"], "rows": plan["rows"]}
