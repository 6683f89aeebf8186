"""Completion webhooks: how long after a job's final write its signed POST reaches the receiver.

Jobs with a `callbackUrl` run one at a time through the worker's handler (their records from an
in-memory queue, as elsewhere); each final write queues the webhook on a real webhooks queue on
moto's server, which the delivery function's event source long-polls in a thread of its own (as
Lambda's poller does, and `make run`), and the delivery POSTs to a receiver on loopback. The
latency is the receiver's clock at the request minus the job's `finished_at` in MySQL (one machine,
one clock). Also counted: what a job with a callback costs in MySQL writes in the worker, and what
one delivery attempt costs.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.env import OWNER, Row, budget_row, counted, quiet, recording_runtime, sqs_event
from chalicelib import runtime as runtime_module
from chalicelib.models import as_utc
from chalicelib.queue import DeliveryMessage
from local.eventsource import EventSource, LambdaContext, sqs_record


class _Receiver:
    """Answers 204 to every POST and notes when each job's webhook came (time.time())."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                now = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.arrived[json.loads(body)["data"]["jobId"]] = now  # the envelope names its job
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run(env: Any, *, jobs: int) -> list[Row]:
    queue_url = env.sqs.create_queue(QueueName=f"jobs-bench-webhooks-{env.run_id}")["QueueUrl"]
    receiver = _Receiver()
    settings = env.with_settings(
        webhooks_queue_url=queue_url,
        webhook_allow_http=True,
        webhook_allow_loopback=True,
        webhook_secret_prefix=f"bench/{env.run_id}/",
    )
    runtime, sqs = recording_runtime(settings)
    runtime_module.use(runtime)
    import app

    stop = threading.Event()
    source = EventSource(env.sqs, queue_url, app.deliver_webhooks, function_timeout=120)

    def poll() -> None:
        while not stop.is_set():
            source.poll_once(wait_seconds=1)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        with quiet():
            runtime.signing_secrets.ensure(OWNER)
            poller.start()
            writes, latencies = _run_jobs(runtime, sqs, receiver, jobs)
            attempt = _one_attempt(runtime, receiver)
    finally:
        stop.set()
        poller.join(timeout=3)
        receiver.server.shutdown()
        runtime_module.use(None)
        env.sqs.delete_queue(QueueUrl=queue_url)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] * 1000
    return [
        budget_row(
            "worker, MySQL writes per job with a callbackUrl (start, finish, webhook queued)",
            writes,
            3,
            without_callback=2,
        ),
        Row(
            "webhook delivery, MySQL statements per attempt (read the row, record the attempt)",
            str(len(attempt.mysql)),
            f"AWS calls: {', '.join(attempt.aws) or 'none'} (the secret cached for 5 min)",
            "info",
            {"mysql": attempt.mysql, "aws": attempt.aws},
        ),
        Row(
            "webhook latency from the final write to the receiver, p50 / p95 (local: moto SQS, loopback)",
            f"{p50:.0f} / {p95:.0f} ms",
            f"{len(latencies)} jobs one at a time; the delivery function long-polls as Lambda's poller",
            "info",
            {"p50_ms": p50, "p95_ms": p95, "samples_ms": [x * 1000 for x in latencies]},
        ),
    ]


def _run_jobs(runtime, sqs, receiver: _Receiver, jobs: int) -> tuple[int, list[float]]:
    payload = {"steps": 1, "stepMs": 0}
    context = LambdaContext(timeout_seconds=900)
    latencies, writes = [], 0
    for _ in range(jobs):
        start = len(sqs.messages)
        job_id = runtime.service.submit(
            OWNER, {"type": "sleep", "payload": payload, "callbackUrl": receiver.url}
        ).job.id
        records = [
            sqs_record(m, queue_arn="arn:aws:sqs:us-east-1:123456789012:jobs-bench", region="us-east-1")
            for m in sqs.messages[start:]
        ]
        with counted() as count:
            runtime.worker.handle_batch(sqs_event(records)["Records"], context)
        writes = max(writes, len(count.mysql_writes))
        deadline = time.monotonic() + 30
        while job_id not in receiver.arrived:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webhook of job {job_id} did not arrive within 30 s")
            time.sleep(0.002)
        finished = runtime.store.get_job(job_id).finished_at
        latencies.append(receiver.arrived[job_id] - as_utc(finished).timestamp())
    return writes, latencies


def _one_attempt(runtime, receiver: _Receiver):
    """What one delivery attempt sends: a job ended by a bare final write (nothing queued), then its
    first attempt run directly."""
    from chalicelib.models import JobStatus, utcnow

    body = {"type": "sleep", "payload": {"steps": 1, "stepMs": 0}, "callbackUrl": receiver.url}
    job_id = runtime.service.submit(OWNER, body).job.id
    now = utcnow()
    ended = runtime.store.transition(
        job_id,
        from_=(JobStatus.PENDING,),
        to=JobStatus.CANCELLED,
        finished_at=now,
        updated_at=now,
        callback_due_at=now,
    )
    if not ended:
        raise RuntimeError(f"job {job_id} did not end")
    with counted() as count:
        outcome = runtime.deliverer.deliver(DeliveryMessage(job_id))
    if outcome != "delivered":
        raise RuntimeError(f"the attempt of job {job_id} was {outcome}")
    return count
