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
    #: MySQL statements from the submission to the end (the insert included).
    statements: int = 0
    #: CPU seconds of the worker's process (what load on the machine changes least), and in MySQL.
    cpu_seconds: float = 0.0
    mysql_seconds: float = 0.0


def _one_job(app_module, runtime: Runtime, sqs, chunks: int) -> JobCost:
    with counted() as submitted:
        _, records = submit_jobs(runtime, sqs, 1, {"steps": chunks, "stepMs": 0})
    with counted() as count:
        started, cpu = time.perf_counter(), time.process_time()
        reply = app_module.run_jobs(sqs_event(records), LambdaContext(timeout_seconds=900))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if reply["batchItemFailures"]:
        raise RuntimeError(f"a {chunks}-chunk job failed: {reply}")
    statements = len(submitted.mysql) + len(count.mysql)
    return JobCost(
        chunks, elapsed, count.redis, len(count.mysql), len(count.mysql_writes), statements, cpu, count.mysql_seconds
    )


@dataclass
class BatchCost:
    """What one batch of BATCH ten-chunk jobs sends, submissions included, per job."""

    mysql: float
    redis: float
    sqs: float
    sqs_ops: dict[str, int]
    #: Messages the worker deleted itself (every record but the batch's last, whatever the requests).
    deleted: int


def _batch_cost(app_module, runtime: Runtime, sqs, chunks: int = 10) -> BatchCost:
    first, deleted = len(sqs.requests), len(sqs.deleted)
    with counted() as count:
        _, records = submit_jobs(runtime, sqs, BATCH, {"steps": chunks, "stepMs": 0})
        reply = app_module.run_jobs(sqs_event(records), LambdaContext(timeout_seconds=900))
    if reply["batchItemFailures"]:
        raise RuntimeError(f"a batch failed: {reply}")
    # SQS's requests from every thread: the worker's deletes go out on the queue's own thread.
    requests = sqs.requests[first:]
    ops: dict[str, int] = {}
    for op in requests:
        ops[op] = ops.get(op, 0) + 1
    return BatchCost(
        len(count.mysql) / BATCH, count.redis / BATCH, len(requests) / BATCH, ops, len(sqs.deleted) - deleted
    )


def costs(env, *, sizes: list[int], repeats: int) -> tuple[list[Row], dict[str, float]]:
    """Per-chunk overhead from the difference between the largest and the smallest job."""
    import app as app_module

    runtime, sqs = recording_runtime(env.settings)
    runtime_module.use(runtime)
    try:
        with quiet():
            _one_job(app_module, runtime, sqs, 2)  # warm
            measured = {n: [_one_job(app_module, runtime, sqs, n) for _ in range(repeats)] for n in sizes}
            batch = _batch_cost(app_module, runtime, sqs)
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
    statements = [first[n].statements for n in sizes]
    fixed_redis = first[small].redis - small * per_chunk_redis
    fixed_mysql = first[small].mysql - small * per_chunk_mysql
    step_s = _step_seconds()
    overhead_s = per_chunk_s - step_s
    cpu = {n: statistics.median(c.cpu_seconds for c in measured[n]) for n in sizes}
    cpu_per_chunk_s = (cpu[big] - cpu[small]) / span - step_s
    job_s = median[small]
    job_mysql_s = statistics.median(c.mysql_seconds for c in measured[small])
    sizes_text = " / ".join(map(str, sizes))
    rows = [
        budget_row("worker: Redis round trips per chunk", per_chunk_redis, 1),
        budget_row("worker: MySQL statements per chunk", per_chunk_mysql, 0),
        Row(
            "worker: overhead per chunk (besides the step)",
            f"{overhead_s * 1e6:.0f} us",
            f"budget 100 us; whole chunk {per_chunk_s * 1e6:.0f} us ({big}- minus {small}-chunk job, median of"
            f" {repeats}) less the step's own {step_s * 1e6:.0f} us",
            "ok" if overhead_s <= 100e-6 else "MISS",
            {"seconds": overhead_s, "chunk_seconds": per_chunk_s, "step_seconds": step_s},
        ),
        Row(
            "worker: CPU time per chunk (besides the step)",
            f"{cpu_per_chunk_s * 1e6:.0f} us",
            "the worker process's own time (process_time), same jobs: what the machine's load moves least",
            "info",
            {"seconds": cpu_per_chunk_s},
        ),
        Row(
            f"worker: a {small}-chunk job's run, of it in MySQL (start, final)",
            f"{job_s * 1000:.2f} ms, {job_mysql_s * 1000:.2f} ms ({job_mysql_s / job_s:.0%})",
            "what the guarantee 'MySQL is the truth' (two commits) costs a job, median",
            "info",
            {"job_seconds": job_s, "mysql_seconds": job_mysql_s},
        ),
        Row(
            f"worker: MySQL statements per job, submit to end ({sizes_text} chunks)",
            " / ".join(map(str, statements)),
            "budget 3 (insert, start, final), flat",
            "ok" if set(statements) == {3} else "MISS",
            {"statements": dict(zip(map(str, sizes), statements, strict=True))},
        ),
        Row(
            f"worker: MySQL writes per job ({sizes_text} chunks)",
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
        Row(
            f"per job of a batch of {BATCH} ten-chunk jobs, submit to end",
            f"{batch.mysql:g} MySQL, {batch.redis:g} Redis round trips, {batch.sqs:g} SQS requests",
            "SQS: "
            + ", ".join(f"{op} {n}" for op, n in sorted(batch.sqs_ops.items()))
            + f" per {BATCH}, {batch.deleted} messages deleted"
            + " (ours; Lambda's poller adds its ReceiveMessage and DeleteMessageBatch per batch)",
            "info",
            {
                "mysql": batch.mysql,
                "redis": batch.redis,
                "sqs": batch.sqs,
                "sqs_ops": batch.sqs_ops,
                "deleted": batch.deleted,
            },
        ),
    ]
    return rows, {"per_chunk_s": overhead_s, "per_chunk_redis": per_chunk_redis}


def server_commands(env, *, small: int = 10, big: int = 100) -> list[Row]:
    """Redis commands the server runs (a script's own calls included), from INFO commandstats of a
    private redis-server: the shared one's counts would hold other runs' commands too."""
    import tempfile
    from pathlib import Path

    import redis

    import app as app_module
    from local import services

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = services.start_redis(Path(tmp))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            runtime, sqs = recording_runtime(env.with_settings(redis_url=url))
            runtime_module.use(runtime)
            server = redis.Redis.from_url(url)
            with quiet():
                _one_job(app_module, runtime, sqs, 2)  # warm: scripts loaded, connections made

                def commands(action) -> tuple[int, int]:
                    calls, usec = _commands(server)
                    action()
                    after_calls, after_usec = _commands(server)
                    return after_calls - calls - 1, after_usec - usec  # less INFO itself

                submit, _ = commands(lambda: submit_jobs(runtime, sqs, 1, {"steps": 1, "stepMs": 0}))
                jobs = {n: commands(lambda n=n: _one_job(app_module, runtime, sqs, n)) for n in (small, big)}
        finally:
            runtime_module.use(None)
            services.stop(proc)
    per_chunk = (jobs[big][0] - jobs[small][0]) / (big - small)
    usec_per_chunk = (jobs[big][1] - jobs[small][1]) / (big - small)
    fixed = jobs[small][0] - small * per_chunk - submit
    return [
        Row(
            "Redis server commands (scripts' calls included)",
            f"{per_chunk:g} per chunk; {fixed:g} per job besides its chunks; {submit:g} per submit",
            f"INFO commandstats of a private redis-server, a {big}- minus a {small}-chunk job",
            "info",
            {"per_chunk": per_chunk, "per_job": fixed, "per_submit": submit},
        ),
        Row(
            "Redis server time per chunk",
            f"{usec_per_chunk:.0f} us",
            "the same commandstats' EVALSHA usec: what one chunk costs Redis's single thread",
            "info",
            {"usec_per_chunk": usec_per_chunk},
        ),
    ]


def _commands(server) -> tuple[int, int]:
    """Commands the server ran since it started, and the microseconds it spent in EVALSHA."""
    stats = server.info("commandstats")
    # A script's own calls are counted as commands too, and their time is inside the script's.
    return sum(s["calls"] for s in stats.values()), stats.get("cmdstat_evalsha", {}).get("usec", 0)


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
    # From the run's own queue, as Lambda's would be: each done record's DeleteMessage goes to moto's
    # server, as in AWS (a record from a queue the worker does not know costs a GetQueueUrl first).
    arn = env.sqs.get_queue_attributes(QueueUrl=env.settings.jobs_queue_url, AttributeNames=["QueueArn"])
    records = [{**record, "eventSourceARN": arn["Attributes"]["QueueArn"]} for record in records]
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


def _round_trip_floor(runtime: Runtime, median_us, pack_args: list) -> dict[str, float]:
    """What any one Redis round trip costs on this machine, below which no chunk's overhead can go:
    a bare PING on a raw socket (no client at all), and a script that returns at once, sent the
    worker's way (hotstate's direct path) with a chunk's arguments."""
    import socket
    from urllib.parse import urlsplit

    from chalicelib import hotstate

    where = urlsplit(runtime.settings.redis_url)
    with socket.create_connection((where.hostname, where.port or 6379)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def ping() -> None:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            sock.recv(64)

        floor = {"floor: a bare PING over loopback, raw socket, no client": median_us(ping)}
    client = hotstate.connect(runtime.settings.redis_url)
    trivial = client.register_script("return {1, '0', false, false}")
    client.script_load(trivial.script)
    direct = hotstate._Direct(client, trivial)
    keys, args = pack_args[3:5], pack_args[5:]
    floor["floor: a script returning at once, the worker's path, a chunk's arguments"] = median_us(
        lambda: direct(keys=keys, args=args)
    )
    client.close()
    return floor


def chunk_profile(env, *, calls: int = 2000) -> list[Row]:
    """Where a chunk's overhead goes: each step of the worker's per-chunk path timed alone (median
    of `calls`), the last against this run's Redis, as the worker makes it (hotstate.write_chunk)."""
    from chalicelib import hotstate
    from chalicelib.chunks import Run
    from chalicelib.jobs import Step
    from chalicelib.jobs.sleep import Sleep
    from chalicelib.models import Job, JobStatus, new_job_id, utcnow

    runtime = Runtime(env.settings)
    now = utcnow()
    job = Job(
        id=new_job_id(),
        owner=OWNER,
        type="sleep",
        status=JobStatus.RUNNING,
        payload={"steps": 1000, "stepMs": 0},
        created_at=now,
        updated_at=now,
        started_at=now,
        max_attempts=3,
        timeout_seconds=900,
        attempts=1,
    )
    token = "t" * 32
    run = Run(job, Sleep(), None, job.payload, {"done": 0}, 0, token)  # type: ignore[arg-type]
    assert runtime.hot.acquire(job.id, token, lease_seconds=30).held
    pack_args = None

    def median_us(action) -> float:
        action()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    def observe() -> None:
        done = run.done + 1
        step = Step(state={"done": done}, done=done, total=1000, finished=False, stage="sleeping", message="step")
        run.observe(step, 0.05)

    def write() -> None:
        run.seq += 1
        runtime.hot.write_chunk(job, run.view, seq=run.seq, checkpoint=run.checkpoint(), lease=token, lease_seconds=30)

    def pack() -> None:
        hotstate._pack(pack_args)

    parts = {
        "the step's outcome taken in (progress, ETA, cadence)": median_us(observe),
        "checkpoint JSON (state measured)": median_us(run.checkpoint),
        "view JSON (fixed fields once per run)": median_us(lambda: run.view.encode(job)),
    }
    pack_args = ["EVALSHA", "0" * 40, 2, "k" * 40, "l" * 40, 5, OWNER, run.view.encode(job), 3600, 1]
    pack_args += [run.checkpoint(), "", token, 30000]
    parts["command packed (RESP)"] = median_us(pack)
    whole = median_us(write)
    encoded = ("checkpoint JSON (state measured)", "view JSON (fixed fields once per run)", "command packed (RESP)")
    parts["round trip: send, Redis runs the script, reply read"] = whole - sum(parts[k] for k in encoded)
    runtime.hot.release(job.id, token)
    parts.update(_round_trip_floor(runtime, median_us, pack_args))
    return [
        Row(
            f"per-chunk profile: {name}",
            f"{us:.1f} us",
            f"median of {calls}, timed alone",
            "info",
            {"us": us},
        )
        for name, us in parts.items()
    ]
