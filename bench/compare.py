"""Side by side on the same Redis: RQ and Celery doing what we do.

- a status poll: ours `service.get` (what `GET /jobs/{id}` runs) against RQ's `Job.fetch` +
  `get_status()` + `meta`, and Celery's `AsyncResult(id).state` + `.info`;
- a progress update: our worker's per-chunk overhead besides the step (checkpoint, view, cancel flag) against
  RQ's `job.meta[...] = ...; job.save_meta()` and Celery's `update_state`;
- a submission: ours `service.submit` (MySQL insert and Redis; the SQS send is measured with
  `POST /jobs`, on moto's server) against `Queue.enqueue` and `apply_async`;
- jobs per second: the same ten-chunk no-op jobs with a progress update per chunk, by the same
  number of worker processes (`rq worker --burst` each; `celery worker --pool=prefork -c N`),
  from the first to the last completion each system recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from bench import worker as our_worker
from bench.env import OWNER, ROOT, Row, counted, percentiles, quiet, ratio_row, recording_runtime
from chalicelib.runtime import Runtime

BIN = Path(sys.executable).parent


def measure(calls: int, action: Callable[[int], Any]) -> tuple[float, int]:
    """p50 milliseconds and the most Redis round trips of `calls` calls of `action(i)`, after one
    call to warm up, counted apart: it makes the connections (each with its handshake) and loads the
    scripts (a script's first call is 3 round trips: EVALSHA answered NOSCRIPT, SCRIPT LOAD, EVALSHA)."""
    action(-1)
    times, trips = [], 0
    for i in range(calls):
        with counted() as count:
            started = time.perf_counter()
            action(i)
            times.append(time.perf_counter() - started)
        trips = max(trips, count.redis)
    return percentiles(times)[0], trips


def run(env, *, polls: int, jobs: int, processes: list[int], ours_chunk: dict | None) -> list[Row]:
    run_tag = f"bench-{env.run_id}"
    os.environ["BENCH_CELERY_URL"] = env.redis_url
    os.environ["BENCH_CELERY_QUEUE"] = f"{run_tag}-celery"
    from rq import Queue
    from rq.job import Job

    from bench import celery_tasks, rq_tasks

    conn = redis.Redis.from_url(env.redis_url)
    idle = Queue(f"{run_tag}-idle", connection=conn)  # no worker listens: jobs stay queued
    runtime = Runtime(env.settings)
    theirs_poll, theirs_progress, theirs_submit = {}, {}, {}
    trips_poll, trips_progress, trips_submit = {}, {}, {}

    with quiet():
        job_id = runtime.service.submit(OWNER, {"type": "sleep", "payload": {"steps": 10, "stepMs": 0}}).job.id
        runtime.service.get(OWNER, job_id)
        ours_poll, ours_poll_trips = measure(polls, lambda i: runtime.service.get(OWNER, job_id))
        # The SQS send is left out here (RQ and Celery enqueue into Redis): POST /jobs's own row
        # has it, on moto's server.
        no_sqs, _ = recording_runtime(env.settings)
        body = {"type": "sleep", "payload": {"steps": 10, "stepMs": 0}}
        ours_submit, ours_submit_trips = measure(min(polls, 300), lambda i: no_sqs.service.submit(OWNER, body))
        # What the guarantee "MySQL is the truth before the 202" costs by itself: the insert (its commit).
        insert_only, _ = measure(min(polls, 300), lambda i: no_sqs.store.insert_job(_pending_job(body)))

    rq_job = idle.enqueue(rq_tasks.chunked, 10)
    rq_job.meta["progress"] = {"done": 5, "total": 10}
    rq_job.save_meta()

    def rq_poll(i):
        job = Job.fetch(rq_job.id, connection=conn)
        return job.get_status(), job.meta

    def rq_progress(i):
        rq_job.meta["progress"] = {"done": i % 10 + 1, "total": 10}
        rq_job.save_meta()

    theirs_poll["RQ"], trips_poll["RQ"] = measure(polls, rq_poll)
    theirs_progress["RQ"], trips_progress["RQ"] = measure(polls, rq_progress)
    theirs_submit["RQ"], trips_submit["RQ"] = measure(min(polls, 300), lambda i: idle.enqueue(rq_tasks.chunked, 10))

    task = celery_tasks.chunked
    celery_id = task.apply_async(args=(10,), queue=f"{run_tag}-idle-celery").id
    task.update_state(task_id=celery_id, state="PROGRESS", meta={"done": 5, "total": 10})

    def celery_poll(i):
        result = celery_tasks.app.AsyncResult(celery_id)
        return result.state, result.info

    theirs_poll["Celery"], trips_poll["Celery"] = measure(polls, celery_poll)
    theirs_progress["Celery"], trips_progress["Celery"] = measure(
        polls, lambda i: task.update_state(task_id=celery_id, state="PROGRESS", meta={"done": i % 10 + 1, "total": 10})
    )
    theirs_submit["Celery"], trips_submit["Celery"] = measure(
        min(polls, 300), lambda i: task.apply_async(args=(10,), queue=f"{run_tag}-idle-celery")
    )

    rows = [
        ratio_row("status poll p50 (ours: service.get)", ours_poll, theirs_poll, unit=" ms"),
        _trips_row("status poll: Redis round trips", ours_poll_trips, trips_poll),
        ratio_row("submit p50 (ours: MySQL insert + Redis, SQS send aside)", ours_submit, theirs_submit, unit=" ms"),
        _trips_row("submit: Redis round trips", ours_submit_trips, trips_submit),
    ]
    if ours_chunk:
        rows += [
            ratio_row(
                "progress update p50 (ours: per-chunk overhead)",
                ours_chunk["per_chunk_s"] * 1000,
                theirs_progress,
                unit=" ms",
            ),
            _trips_row("progress update: Redis round trips", ours_chunk["per_chunk_redis"], trips_progress),
        ]
    celery_submit = theirs_submit["Celery"]
    rows.append(
        Row(
            "submit against Celery's enqueue (budget <= x1.2)",
            f"x{ours_submit / celery_submit:.2f}",
            f"of which the MySQL insert alone (the truth before the 202) {insert_only:.3g} ms,"
            f" x{insert_only / celery_submit:.2f} of Celery's {celery_submit:.3g} ms",
            "ok" if ours_submit <= 1.2 * celery_submit else "MISS",
            {"ratio": ours_submit / celery_submit, "insert_ms": insert_only, "celery_ms": celery_submit},
        )
    )
    # Ours, RQ's and Celery's back to back for each process count, so that all three see the same machine.
    for n in processes:
        ours_rate = our_worker.throughput(env, jobs=jobs, processes=n)
        rates = {
            "RQ": rq_throughput(env, conn, jobs=jobs, processes=n, queue=f"{run_tag}-rq{n}"),
            "Celery": celery_throughput(celery_tasks, jobs=jobs, processes=n),
        }
        row = ratio_row(
            f"jobs/s, {jobs} x 10-chunk jobs with progress, {n} worker process{'es' if n > 1 else ''}",
            ours_rate,
            rates,
            unit=" jobs/s",
            higher_is_better=True,
            fmt="{:.0f}",
        )
        ratio = ours_rate / rates["Celery"]
        row.verdict = f"{row.verdict}; x{ratio:.2f} Celery, budget >= x1.2: {'ok' if ratio >= 1.2 else 'MISS'}"
        rows.append(row)
    return rows


def _pending_job(body: dict):
    from chalicelib.models import Job, JobStatus, new_job_id, utcnow

    now = utcnow()
    return Job(
        id=new_job_id(),
        owner=OWNER,
        type=body["type"],
        status=JobStatus.PENDING,
        payload=body["payload"],
        created_at=now,
        updated_at=now,
        max_attempts=3,
        timeout_seconds=900,
    )


def _trips_row(figure: str, ours: float, theirs: dict[str, int]) -> Row:
    parts = "; ".join(f"{name} {value}" for name, value in theirs.items())
    verdict = "fewer" if ours < min(theirs.values()) else ("same" if ours == min(theirs.values()) else "more")
    return Row(figure, f"{ours:g}", parts, verdict, {"ours": ours, **theirs})


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _rate(stamps: list[Any]) -> float:
    moments = sorted(s if isinstance(s, datetime) else datetime.fromisoformat(str(s)) for s in stamps)
    return (len(moments) - 1) / max((moments[-1] - moments[0]).total_seconds(), 1e-3)


def rq_throughput(env, conn: redis.Redis, *, jobs: int, processes: int, queue: str) -> float:
    """`processes` burst workers (each forks a work horse per job, RQ's default) drain the queue."""
    from rq import Queue
    from rq.job import Job

    from bench import rq_tasks

    q = Queue(queue, connection=conn)
    ids = [q.enqueue(rq_tasks.chunked, 10).id for _ in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            _spawn(
                [str(BIN / "rq"), "worker", "--burst", "--quiet", "--url", env.redis_url, queue],
                Path(tmp) / f"rq-{i}.log",
            )
            for i in range(processes)
        ]
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                log = (Path(tmp) / "rq-0.log").read_text()[-2000:]
                raise RuntimeError(f"rq worker exited {proc.returncode}: {log}")
    finished = Job.fetch_many(ids, connection=conn)
    if any(job is None or not job.is_finished for job in finished):
        raise RuntimeError("not every RQ job finished")
    return _rate([job.ended_at for job in finished])


def celery_throughput(celery_tasks, *, jobs: int, processes: int) -> float:
    """A prefork worker with `processes` children drains the queue; results read back from Redis."""
    ids = [celery_tasks.chunked.delay(10).id for _ in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "celery.log"
        proc = _spawn(
            [
                str(BIN / "celery"),
                "-A",
                "bench.celery_tasks",
                "worker",
                "--pool=prefork",
                f"--concurrency={processes}",
                "-Q",
                celery_tasks.QUEUE,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
                f"--hostname={celery_tasks.QUEUE}@%h",
            ],
            log,
        )
        try:
            deadline = time.monotonic() + 600
            for task_id in ids:
                while not celery_tasks.app.AsyncResult(task_id).ready():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"celery worker: {log.read_text()[-2000:]}")
                    time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    results = [celery_tasks.app.AsyncResult(task_id) for task_id in ids]
    if any(r.state != "SUCCESS" for r in results):
        raise RuntimeError("not every Celery task succeeded")
    return _rate([r.date_done for r in results])
