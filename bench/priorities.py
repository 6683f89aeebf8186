"""Priorities: how long a high job waits behind a backlog of normal ones, and what the backlog keeps.

`normal_jobs` two-chunk sleep jobs are queued on the jobs queue; two worker processes drain it
(local/worker_process.py, batches of 10, as the normal event source mapping would) and one more
serves the high-priority queue alone (`--priority high`, batches of 1: .chalice/config.json's
run_high_jobs), as its own mapping with its own reserved concurrency does on AWS. Once the backlog
is being worked, `high_jobs` one-chunk high jobs are submitted half a second apart. The figures:
the high jobs' queue wait (started_at - created_at, from MySQL) p50 and p95, against the normal
jobs' throughput over the same window (nothing starves) and the backlog still queued when the last
high job had started (so the high jobs did not simply find an empty queue). Then the same without a
high-priority queue (JOBS_HIGH_QUEUE_URL unset: every job on the jobs queue, the third process
serving it too), for what the queue of their own saves them.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

from bench.env import Row, quiet
from chalicelib.runtime import Runtime
from local import services, worker_process

#: "within a few seconds": the high worker's long poll returns as soon as a message is there.
GOAL_SECONDS = 3.0
SPACING_SECONDS = 0.5
NORMAL = {"type": "sleep", "payload": {"steps": 2, "stepMs": 20}}
HIGH = {"type": "sleep", "payload": {"steps": 1, "stepMs": 20}, "priority": "high"}


def run(env: Any, *, normal_jobs: int, high_jobs: int) -> list[Row]:
    own = _scenario(env, normal_jobs=normal_jobs, high_jobs=high_jobs, own_queue=True)
    shared = _scenario(env, normal_jobs=normal_jobs, high_jobs=high_jobs, own_queue=False)
    return [
        Row(
            f"priorities: queue wait of {high_jobs} high jobs behind {normal_jobs} normal ones (1 + 2 workers)",
            f"p50 {own['p50_s']:.2f} s, p95 {own['p95_s']:.2f} s",
            f"goal p95 within {GOAL_SECONDS:g} s; {own['normal_left']} normal jobs still queued or running then",
            "ok" if own["p95_s"] <= GOAL_SECONDS and own["normal_left"] > 0 else "MISS",
            own,
        ),
        Row(
            "priorities: normal jobs' throughput meanwhile (nothing starves)",
            f"{own['normal_jobs_per_s']:.1f} jobs/s",
            f"{own['normal_done_during']} completed in {own['seconds']:.1f} s while the high jobs came",
            "ok" if own["normal_done_during"] > 0 else "MISS",
            own,
        ),
        Row(
            "priorities: the same high jobs without a queue of their own (3 workers on one queue)",
            f"p50 {shared['p50_s']:.2f} s, p95 {shared['p95_s']:.2f} s",
            f"x{shared['p95_s'] / max(own['p95_s'], 1e-3):.0f} the p95 with their own queue: they wait out the backlog",
            "info",
            shared,
        ),
    ]


def _scenario(env: Any, *, normal_jobs: int, high_jobs: int, own_queue: bool) -> dict[str, Any]:
    """The backlog and the high jobs; with `own_queue` False every job shares the jobs queue (no
    JOBS_HIGH_QUEUE_URL) and the third worker process serves it too."""
    name = f"jobs-prio-{uuid.uuid4().hex[:8]}"
    queue_url = services.create_jobs_queue(env.sqs, name)
    high_url = services.create_jobs_queue(env.sqs, f"{name}-high") if own_queue else ""
    settings = replace(env.settings, jobs_queue_url=queue_url, jobs_high_queue_url=high_url)
    service = Runtime(settings).service
    procs = [worker_process.start(settings, batch_size=1, priority="high" if own_queue else "normal")]
    try:
        with quiet():  # the high worker is up (a process's imports take seconds on a busy machine)
            _wait_started(env, [service.submit("bench", HIGH).job.id], count=1, timeout=120)
            normal_ids = [service.submit("bench", NORMAL).job.id for _ in range(normal_jobs)]
        procs += [worker_process.start(settings, batch_size=10) for _ in range(2)]
        _wait_started(env, normal_ids, count=1, timeout=120)
        before, started = _completed(env, normal_ids), time.monotonic()
        high_ids = []
        with quiet():
            for _ in range(high_jobs):
                high_ids.append(service.submit("bench", HIGH).job.id)
                time.sleep(SPACING_SECONDS)
        _wait_started(env, high_ids, count=high_jobs, timeout=600)
        elapsed = time.monotonic() - started
        after = _completed(env, normal_ids)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)
        for url in filter(None, (queue_url, high_url)):
            env.sqs.delete_queue(QueueUrl=url)
    waits = sorted(_waits(env, high_ids))
    return {
        "own_queue": own_queue,
        "high_jobs": high_jobs,
        "normal_jobs": normal_jobs,
        "p50_s": statistics.median(waits),
        "p95_s": waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))],
        "normal_done_during": after - before,
        "normal_jobs_per_s": (after - before) / elapsed,
        "normal_left": normal_jobs - after,
        "seconds": elapsed,
    }


def _wait_started(env: Any, ids: list[str], *, count: int, timeout: float) -> None:
    """Until at least `count` of these jobs have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(env, ids, "started_at IS NOT NULL") >= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"fewer than {count} jobs started within {timeout:g} s: are the worker processes up?")


def _completed(env: Any, ids: list[str]) -> int:
    return _count(env, ids, "status = 'COMPLETED'")


def _count(env: Any, ids: list[str], condition: str) -> int:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM jobs WHERE {condition} AND id IN ({', '.join(['%s'] * len(ids))})", ids)
        return cur.fetchone()[0]


def _waits(env: Any, ids: list[str]) -> list[float]:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT created_at, started_at FROM jobs WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)
        return [(started - created).total_seconds() for created, started in cur.fetchall()]
