"""The worker's costs: per chunk, per job, and jobs per second by one and by several processes.

Jobs are `sleep` jobs with stepMs 0 (no-op chunks), submitted through the service and run through
the worker Lambda's handler (`app.run_jobs`) with Lambda's SQS event shape, records built from the
very messages the service sent.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass

from bench.env import OWNER, Row, budget_row, counted, quiet, recording_runtime, sqs_event, submit_jobs
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from local.eventsource import LambdaContext

BATCH = 10  # the worker's sqs_batch_size in .chalice/config.json


@dataclass
class JobCost:
    chunks: int
    seconds: float
    redis: int
    mysql: int
    mysql_writes: int


def _one_job(app_module, runtime: Runtime, sqs, chunks: int) -> JobCost:
    _, records = submit_jobs(runtime, sqs, 1, {"steps": chunks, "stepMs": 0})
    with counted() as count:
        started = time.perf_counter()
        reply = app_module.run_jobs(sqs_event(records), LambdaContext(timeout_seconds=900))
        elapsed = time.perf_counter() - started
    if reply["batchItemFailures"]:
        raise RuntimeError(f"a {chunks}-chunk job failed: {reply}")
    return JobCost(chunks, elapsed, count.redis, len(count.mysql), len(count.mysql_writes))


def costs(env, *, sizes: list[int], repeats: int) -> tuple[list[Row], dict[str, float]]:
    """Per-chunk overhead from the difference between the largest and the smallest job."""
    import app as app_module

    runtime, sqs = recording_runtime(env.settings)
    runtime_module.use(runtime)
    try:
        with quiet():
            _one_job(app_module, runtime, sqs, 2)  # warm
            measured = {n: [_one_job(app_module, runtime, sqs, n) for _ in range(repeats)] for n in sizes}
    finally:
        runtime_module.use(None)
    small, big = min(sizes), max(sizes)
    median = {n: statistics.median(c.seconds for c in measured[n]) for n in sizes}
    first = {n: measured[n][0] for n in sizes}
    span = big - small
    per_chunk_s = (median[big] - median[small]) / span
    per_chunk_redis = (first[big].redis - first[small].redis) / span
    per_chunk_mysql = (first[big].mysql - first[small].mysql) / span
    writes = [first[n].mysql_writes for n in sizes]
    fixed_redis = first[small].redis - small * per_chunk_redis
    fixed_mysql = first[small].mysql - small * per_chunk_mysql
    step_s = _step_seconds()
    overhead_s = per_chunk_s - step_s
    rows = [
        budget_row("worker: Redis round trips per chunk", per_chunk_redis, 1),
        budget_row("worker: MySQL statements per chunk", per_chunk_mysql, 0),
        Row(
            "worker: overhead per chunk (besides the step)",
            f"{overhead_s * 1e6:.0f} us",
            f"whole chunk {per_chunk_s * 1e6:.0f} us ({big}- minus {small}-chunk job, median of {repeats})"
            f" less the step's own {step_s * 1e6:.0f} us",
            "info",
            {"seconds": overhead_s, "chunk_seconds": per_chunk_s, "step_seconds": step_s},
        ),
        Row(
            f"worker: MySQL writes per job ({' / '.join(map(str, sizes))} chunks)",
            " / ".join(map(str, writes)),
            "budget: start + finish = 2, flat",
            "ok" if set(writes) == {2} else "MISS",
            {"writes": dict(zip(map(str, sizes), writes, strict=True))},
        ),
        Row(
            "worker: fixed cost per job",
            f"{fixed_redis:g} Redis, {fixed_mysql:g} MySQL, {(median[small] - small * per_chunk_s) * 1000:.2f} ms",
            "start + finish, besides the chunks",
            "info",
        ),
    ]
    return rows, {"per_chunk_s": overhead_s, "per_chunk_redis": per_chunk_redis}


def _step_seconds(calls: int = 2000) -> float:
    """What a no-op `sleep` step costs by itself (its time.sleep(0) is a real system call)."""
    from chalicelib.jobs import JobTypes, testing
    from chalicelib.jobs.sleep import Sleep

    job_type, ctx = Sleep(), testing.context()
    payload = JobTypes([job_type]).check_payload(job_type, {"steps": calls + 1, "stepMs": 0}, ctx)
    state = job_type.start(payload, ctx)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        state = job_type.step(payload, state, ctx).state
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- throughput: several processes, each its own Runtime ----------------------------------------


def _worker_process(settings, records: list[dict], ready, start, done) -> None:
    """One worker 'container': its own Runtime, invoked with batches of records once told to go."""
    sys.stdout = open(os.devnull, "w")  # EMF metrics and logs, as Lambda would print them
    import app as app_module

    runtime = Runtime(settings)
    runtime_module.use(runtime)
    runtime.hot.ping()  # connections made before the clock starts, as in a warm container
    runtime.store.ping()
    ready.wait()
    start.wait()
    failed = 0
    for first in range(0, len(records), BATCH):
        reply = app_module.run_jobs(sqs_event(records[first : first + BATCH]), LambdaContext(timeout_seconds=900))
        failed += len(reply["batchItemFailures"])
    done.put(failed)


def throughput(env, *, jobs: int, processes: int, chunks: int = 10) -> float:
    """Jobs per second through the handler by `processes` worker processes, from the first to the
    last job's completion as MySQL recorded them (process start-up left out)."""
    runtime, sqs = recording_runtime(env.settings)
    owner = f"{OWNER}-tp{processes}-{jobs}"
    with quiet():
        ids, records = submit_jobs(runtime, sqs, jobs, {"steps": chunks, "stepMs": 0}, owner=owner)
    ctx = multiprocessing.get_context("spawn")
    ready, start, done = ctx.Barrier(processes + 1), ctx.Event(), ctx.Queue()
    shares = [records[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_worker_process, args=(env.settings, share, ready, start, done)) for share in shares]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    start.set()
    failed = sum(done.get(timeout=600) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    if failed:
        raise RuntimeError(f"{failed} records failed")
    return completion_rate(env, owner, jobs)


def completion_rate(env, owner: str, jobs: int) -> float:
    conn = env.mysql()
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), MIN(finished_at), MAX(finished_at) FROM jobs WHERE owner = %s AND status = 'COMPLETED'",
            (owner,),
        )
        completed, first, last = cur.fetchone()
    if completed != jobs:
        raise RuntimeError(f"{completed} of {jobs} jobs completed")
    return (jobs - 1) / max((last - first).total_seconds(), 1e-3)


def throughput_rows(env, *, jobs: int, process_counts: list[int]) -> tuple[list[Row], dict[int, float]]:
    rates = {n: throughput(env, jobs=jobs, processes=n) for n in process_counts}
    rows = [
        Row(
            f"worker: jobs/s, {jobs} x 10-chunk jobs, {n} process{'es' if n > 1 else ''}",
            f"{rate:.0f} jobs/s",
            f"{rate * 10:.0f} chunks/s; first to last completion",
            "info",
            {"jobs_per_s": rate},
        )
        for n, rate in rates.items()
    ]
    return rows, rates
