"""Batches: `jobs` jobs submitted as one POST /batches against as many single POST /jobs, in one run.

Both go through the app's routes as API Gateway invokes them (bench/api.py's Caller), to the run's
MariaDB and Redis; each is counted (MySQL statements, Redis round trips, SQS requests) and timed,
twice: with SQS aside (messages kept in memory, each request counted: what our code and the
databases cost) and with moto's SQS over HTTP. moto spends about 14 ms of its own Python per
message of a SendMessageBatch here, so its wall time is moto's, not SQS's (on AWS one
SendMessageBatch of ten is one request, and a batch's requests go out SEND_CONCURRENCY at a
time). The goal of the issue: the batch at least 20x faster per job. Then `GET /batches/{id}` of
the hot batch: one Redis round trip, no MySQL.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

from bench.api import Caller, proxy_event
from bench.env import IoCount, RecordingSqs, Row, quiet, recording_runtime
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from local import services

GOAL_RATIO = 20.0
#: Polls of the hot batch timed (the median is kept).
POLLS = 20
#: Batches timed with SQS aside, the counted one included (the median is kept).
BATCH_REPEATS = 5
_SPEC = {"type": "sleep", "payload": {"steps": 1}}


def run(env: Any, *, jobs: int) -> list[Row]:
    aside, recording = recording_runtime(env.settings)
    single_s, batch_s, singles, batch, poll, poll_s = _measure(aside, jobs, recording, repeats=BATCH_REPEATS)
    queue_url = services.create_jobs_queue(env.sqs, f"jobs-batches-{uuid.uuid4().hex[:8]}")
    try:
        moto_single_s, moto_batch_s, *_ = _measure(Runtime(replace(env.settings, jobs_queue_url=queue_url)), jobs)
    finally:
        env.sqs.delete_queue(QueueUrl=queue_url)
        runtime_module.use(None)
    batch_sqs = len(batch.aws)
    ratio, moto_ratio = single_s / batch_s, moto_single_s / moto_batch_s
    sends = -(-jobs // 10)
    return [
        Row(
            f"batch submit: {jobs} jobs as one POST /batches vs {jobs} POST /jobs, SQS aside",
            f"{batch_s * 1000 / jobs:.3f} ms/job vs {single_s * 1000 / jobs:.3f} ms/job: x{ratio:.1f}",
            f"goal: x{GOAL_RATIO:g} faster per job",
            "ok" if ratio >= GOAL_RATIO else "MISS",
            {"batch_ms_per_job": batch_s * 1000 / jobs, "single_ms_per_job": single_s * 1000 / jobs, "ratio": ratio},
        ),
        Row(
            "batch submit: the same with moto's SQS over HTTP (moto's time per message dominates)",
            f"{moto_batch_s * 1000 / jobs:.3f} ms/job vs {moto_single_s * 1000 / jobs:.3f} ms/job: x{moto_ratio:.1f}",
            "(info: moto, not SQS)",
            "",
            {"batch_ms_per_job": moto_batch_s * 1000 / jobs, "single_ms_per_job": moto_single_s * 1000 / jobs},
        ),
        Row(
            f"batch submit: what {jobs} jobs cost, batch vs singles",
            f"MySQL {len(batch.mysql)} vs {len(singles.mysql)} statements, Redis {batch.redis} vs {singles.redis}"
            f" round trips, SQS {batch_sqs} vs {len(singles.aws)} requests",
            f"budget: 1 multi-row insert of the jobs (and the batch's row), {sends} SQS sends",
            "ok" if batch.inserts == 2 and len(batch.mysql) == 2 and batch_sqs == sends else "MISS",
            {
                "batch_mysql": len(batch.mysql),
                "batch_redis": batch.redis,
                "batch_sqs": batch_sqs,
                "single_mysql": len(singles.mysql),
                "single_redis": singles.redis,
                "single_sqs": len(singles.aws),
            },
        ),
        Row(
            f"GET /batches/{{id}} of a hot {jobs}-job batch",
            f"{poll.redis} Redis round trip(s), {len(poll.mysql)} MySQL statements; p50 {poll_s * 1000:.2f} ms"
            " (the script reads every member's view)",
            "budget: 1 round trip, no MySQL",
            "ok" if poll.redis == 1 and not poll.mysql else "MISS",
            {"redis": poll.redis, "mysql": len(poll.mysql), "p50_ms": poll_s * 1000},
        ),
    ]


def _measure(
    runtime: Runtime, jobs: int, recording: RecordingSqs | None = None, *, repeats: int = 1
) -> tuple[float, float, IoCount, IoCount, IoCount, float]:
    """Seconds of `jobs` single POST /jobs and of one POST /batches of `jobs`, what each sent, and a
    poll's; the batch's SQS requests from `recording` (they go out on the queue's own threads, which
    IoCount does not see)."""
    import app as app_module

    runtime_module.use(runtime)
    caller = Caller(app_module.app)
    submit = proxy_event("POST", "/batches", "/batches", body={"jobs": [_SPEC] * jobs})
    with quiet():
        caller.post(_SPEC)  # connections and clients made before the clock starts
        warm = caller.call(proxy_event("POST", "/batches", "/batches", body={"jobs": [_SPEC] * 11}), 202)[0]
        caller.call(_get(warm["batchId"]), 200)
        started = time.perf_counter()
        counts = [caller.post(_SPEC)[2] for _ in range(jobs)]
        single_s = time.perf_counter() - started
        before = len(recording.requests) if recording else 0
        submitted, first_s, batch = caller.call(submit, 202)
        if recording is not None:
            batch.aws = recording.requests[before:]
        # The median of a few batches: one call is one sample of a noisy machine.
        batch_s = statistics.median([first_s] + [caller.call(submit, 202)[1] for _ in range(repeats - 1)])
        batch_id = submitted["batchId"]
        _, _, poll = caller.call(_get(batch_id), 200)
        poll_s = statistics.median(caller.call(_get(batch_id), 200)[1] for _ in range(POLLS))
    singles = IoCount(
        redis=sum(c.redis for c in counts),
        mysql=[s for c in counts for s in c.mysql],
        aws=[a for c in counts for a in c.aws],
    )
    return single_s, batch_s, singles, batch, poll, poll_s


def _get(batch_id: str) -> dict[str, Any]:
    return proxy_event("GET", "/batches/{batch_id}", f"/batches/{batch_id}", path_params={"batch_id": batch_id})
