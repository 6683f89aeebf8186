"""The chunk loop: runs jobs from SQS records, checkpointing progress to Redis after every chunk.

Per chunk the worker makes ONE Redis round trip (view + checkpoint written, cancel flag read) and
no MySQL write; MySQL is written when a job starts and when it ends. Cancel is honoured at the
next chunk boundary. Leases, hand-offs before the Lambda time limit and retries with backoff come
with the durable-execution issue; their places are marked below.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

from . import errors, jobs, observability
from .observability import logger as log
from .hotstate import FINAL_SEQ, HotState
from .models import Job, JobStatus, utcnow
from .queue import parse_message
from .store import JobStore


#: Weight of the newest chunk in the running average of chunk durations.
CADENCE_WEIGHT = 0.3
#: Longest error text kept on a FAILED job.
MAX_ERROR_CHARS = 2000
#: Longest progress message kept (the `message` column is VARCHAR(1024)).
MAX_MESSAGE_CHARS = 1024


@dataclass
class _Run:
    """One invocation's hold on a job: the row, the type's state and the checkpoint sequence."""

    job: Job
    job_type: jobs.JobType
    payload: dict[str, Any]
    state: Any
    seq: int
    cadence_ms: float | None = None


class Worker:
    """Runs the jobs named by SQS records."""

    def __init__(self, store: JobStore, hot: HotState, *, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._hot = hot
        self._clock = clock

    def handle_batch(self, records: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
        """Run the job of each record; the answer names the records SQS must deliver again.

        The shape is Lambda's partial batch response, so one bad record never re-runs the others.
        """
        failures = []
        for record in records:
            try:
                job_id = parse_message(record["body"])
            except ValueError:
                # Nothing can ever run from it: retrying would only feed the dead-letter queue.
                log.error("dropping message %s: not a job message", record.get("messageId"))
                continue
            try:
                with observability.job_context(job_id):
                    self.run(job_id, context)
            except errors.DependencyUnavailable:
                log.warning("job %s: dependency down, SQS will deliver it again", job_id, exc_info=True)
                failures.append({"itemIdentifier": record["messageId"]})
            except Exception:
                log.exception("job %s: unexpected error, SQS will deliver it again", job_id)
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    @observability.traced
    def run(self, job_id: str, context: Any = None) -> JobStatus | None:
        """Run the job until it ends (or, later, until this invocation must hand it off).

        Returns the status it left the job in, or None when there was nothing to run.
        """
        job = self._store.get_job(job_id, with_checkpoint=True)
        if job is None:
            log.error("job %s: no such row, message dropped", job_id)
            return None
        if job.status.terminal:
            # A duplicate or late delivery; make sure Redis shows the final state MySQL holds.
            self._hot.write(job.id, owner=job.owner, view=job.view(), seq=FINAL_SEQ)
            return None
        # (Durable execution: take the job's lease here; a live holder means a duplicate.)
        if job.status is JobStatus.PENDING and not self._start(job):
            return None
        try:
            run = self._resume(job)
        except errors.InvalidPayload as exc:
            return self._end(job, JobStatus.FAILED, error=f"invalid payload: {exc.message}")
        except errors.UnknownJobType as exc:
            return self._end(job, JobStatus.FAILED, error=exc.message)
        if job.cancel_requested or self._checkpoint(run).cancel:
            return self._end(job, JobStatus.CANCELLED, message="cancelled while running")
        return self._loop(run, context)

    def _start(self, job: Job) -> bool:
        """PENDING -> RUNNING in MySQL; False if the job moved on meanwhile (e.g. was cancelled)."""
        now = utcnow()
        if not self._store.transition(job.id, from_=(JobStatus.PENDING,), to=JobStatus.RUNNING,
                                      count_attempt=True, started_at=now, updated_at=now):
            return False
        job.status, job.started_at, job.updated_at, job.attempts = JobStatus.RUNNING, now, now, job.attempts + 1
        observability.count("JobsStarted")
        observability.milliseconds("QueueWait", (now - _aware(job.created_at)).total_seconds() * 1000)
        log.info("job started", extra={"job_type": job.type, "attempt": job.attempts})
        return True

    def _resume(self, job: Job) -> _Run:
        """Set up the run from the newest checkpoint: Redis first, then the durable one in MySQL."""
        job_type = jobs.get(job.type)
        payload = jobs.check_payload(job_type, job.payload)
        checkpoint = self._hot.get_checkpoint(job.id) or job.checkpoint
        if not checkpoint:
            return _Run(job, job_type, payload, job_type.start(payload), 0)
        job.progress, job.progress_detail, job.message = checkpoint["progress"]
        return _Run(job, job_type, payload, checkpoint["state"], checkpoint["seq"])

    def _loop(self, run: _Run, context: Any) -> JobStatus | None:
        job = run.job
        while True:
            started = self._clock()
            try:
                step = run.job_type.step(run.payload, run.state)
                result = run.job_type.finish(run.payload, step.state) if step.finished else None
            except errors.InvalidPayload as exc:
                return self._end(job, JobStatus.FAILED, error=f"invalid payload: {exc.message}")
            except Exception as exc:
                # (Durable execution: retry with backoff up to maxAttempts before failing.)
                log.warning("job %s failed in a step", job.id, exc_info=True)
                return self._end(job, JobStatus.FAILED, error=_describe(exc))
            elapsed_ms = (self._clock() - started) * 1000
            observability.milliseconds("ChunkTime", elapsed_ms)
            self._observe(run, step, elapsed_ms)
            if step.finished:
                return self._end(job, JobStatus.COMPLETED, result=result, message=step.message)
            outcome = self._checkpoint(run)
            if outcome.cancel:
                return self._end(job, JobStatus.CANCELLED, message="cancelled while running")
            if not outcome.written:
                log.warning("job %s: a newer writer is ahead, stopping this run", job.id)
                return None
            # (Durable execution: hand off to a fresh invocation when time runs short.)

    def _observe(self, run: _Run, step: jobs.Step, elapsed_ms: float) -> None:
        """Take in a chunk's outcome: next state, progress, chunk cadence and ETA."""
        job = run.job
        run.state = step.state
        run.cadence_ms = elapsed_ms if run.cadence_ms is None else (
            CADENCE_WEIGHT * elapsed_ms + (1 - CADENCE_WEIGHT) * run.cadence_ms)
        job.progress = min(100, step.done * 100 // step.total) if step.total else job.progress
        job.progress_detail = {"done": step.done, "total": step.total, "stage": step.stage}
        job.message = _clip(step.message)
        if step.total:
            job.eta_seconds = math.ceil(max(0, step.total - step.done) * run.cadence_ms / 1000)
        job.updated_at = utcnow()

    def _checkpoint(self, run: _Run):
        """The one Redis round trip of a chunk: view, state and heartbeat out, cancel flag in."""
        job = run.job
        run.seq += 1
        checkpoint = {"seq": run.seq, "state": run.state, "progress": [job.progress, job.progress_detail, job.message]}
        return self._hot.write(job.id, owner=job.owner, view=job.view(), seq=run.seq,
                               cadence_ms=run.cadence_ms, checkpoint=checkpoint)

    def _end(self, job: Job, status: JobStatus, *, result: Any = None, error: str | None = None,
             message: str | None = None) -> JobStatus | None:
        """Write the final state: MySQL first (the truth, guarded), then Redis for the polls."""
        now = utcnow()
        if status is JobStatus.COMPLETED:
            job.progress = 100
        job.eta_seconds = None  # nothing left to estimate; MySQL does not keep it either
        job.status, job.result, job.error, job.finished_at, job.updated_at = status, result, error, now, now
        job.message = _clip(message or job.message)
        # (Durable execution: fence this UPDATE with the lease token.)
        if not self._store.transition(job.id, from_=(JobStatus.RUNNING,), to=status, result=result, error=error,
                                      progress=job.progress, progress_detail=job.progress_detail,
                                      message=job.message, finished_at=now, updated_at=now):
            log.warning("job %s was finished by someone else", job.id)
            return None
        self._hot.write(job.id, owner=job.owner, view=job.view(), seq=FINAL_SEQ)
        observability.count(f"Jobs{status.value.title()}")
        if job.started_at is not None:
            observability.milliseconds("JobDuration", (now - _aware(job.started_at)).total_seconds() * 1000)
        log.info("job finished", extra={"status": status.value, "error": error})
        return status


def _clip(message: str | None) -> str | None:
    """A progress message that fits its column; None for none."""
    return message[:MAX_MESSAGE_CHARS] if message else None


def _aware(moment):
    """MySQL hands back naive datetimes; ours are all UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
