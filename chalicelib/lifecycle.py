"""Ending a job: the one place a job reaches a terminal state (COMPLETED, FAILED, CANCELLED).

The worker (a job finishes, fails, times out or is cancelled at a chunk boundary), the sweeper (a
timeout no worker saw, a poison message) and the service (a cancel while PENDING) all end jobs
through `Lifecycle.end`, in one order:

1. the guarded UPDATE in MySQL, the truth: `status IN from_`, and, when a worker ends the job it
   holds, `lease_token = fenced_by`, so a late or taken-over worker cannot end it a second time;
2. the final view in Redis (FINAL_SEQ, never replaced), which also releases the holder's lease;
3. the Jobs<Status> metric and the "job finished" log line;
4. for a job with a callback, its webhook on the webhooks queue (webhooks/outbox.py: the final
   UPDATE also set `callback_due_at`, so a crash before this step leaves the sweeper a row to find).
5. given `holds`, the release of the owner's oldest held job, the room this end made (holds.py);
6. given `dependencies`, the settling of the jobs waiting for this one, which the final Redis write
   of step 2 returned (dependencies.py): each is released, cancelled in turn (through this same
   `end`), or left waiting for its other dependencies.

The final view is retried through a short outage (`HotState.ride_out`, RIDE_OUT_SECONDS). Redis
down past that changes nothing: MySQL is final, so the end stands; a warning is logged and nothing
is raised. Readers repair Redis from MySQL: GET of a job Redis has no view of reads the row and puts
a terminal one back, and GET of an active view quiet for longer than its cadence says checks the
row once (see service.get); the lease left behind expires by itself. Issue 16: with writes paused
while the sweeper failed a job, GET showed it RUNNING for the view's whole TTL (24 hours).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import errors, observability
from .hotstate import FINAL_SEQ, RIDE_OUT_SECONDS, HotState
from .models import Job, JobStatus, as_utc, clip_message, utcnow
from .observability import logger as log
from .results import StoredResult
from .store import EncodedJson, JobStore

if TYPE_CHECKING:
    from .dependencies import Dependencies
    from .holds import Holds
    from .webhooks.outbox import Outbox

#: Longest error text kept on a FAILED job (before an "(attempt N of M)" suffix).
MAX_ERROR_CHARS = 2000


def overdue(job: Job, *, now: datetime | None = None) -> bool:
    """Whether the job has run longer than its timeoutSeconds (store.overdue asks MySQL the same)."""
    now = now or utcnow()
    return job.started_at is not None and now - as_utc(job.started_at) > timedelta(seconds=job.timeout_seconds)


def overdue_after(job: Job) -> float:
    """The moment (epoch seconds) after which the job is `overdue`; infinity for one never started.
    The worker reads it once per run and compares the clock with it after each chunk."""
    if job.started_at is None:
        return math.inf
    return as_utc(job.started_at).timestamp() + job.timeout_seconds


def timeout_error(job: Job) -> str:
    """The error of a job that ran longer than its timeoutSeconds."""
    return f"timed out: ran longer than timeoutSeconds ({job.timeout_seconds})"


def died_error(job: Job) -> str:
    """The error of a job failed because its workers kept dying at one chunk (MAX_DEATHS)."""
    return (
        f"worker died {job.deaths} times while running chunk {job.death_chunk}"
        " (killed, out of memory, past its time limit or an unexpected error)"
    )


def describe(exc: BaseException) -> str:
    """An exception as a FAILED job's error: its type and message, sanitised and clipped."""
    text = exc.message if isinstance(exc, errors.JobsError) else str(exc)
    return errors.sanitise(f"{type(exc).__name__}: {text}")[:MAX_ERROR_CHARS]


class Lifecycle:
    """Writes the terminal states of jobs: MySQL first, then Redis, then the metric and the log."""

    def __init__(
        self,
        store: JobStore,
        hot: HotState,
        outbox: Outbox | None = None,
        *,
        holds: Holds | None = None,
        dependencies: Dependencies | None = None,
    ):
        self._store = store
        self._hot = hot
        self._outbox = outbox
        self._holds = holds
        self._dependencies = dependencies

    def end(
        self,
        job: Job,
        status: JobStatus,
        *,
        from_: Iterable[JobStatus],
        fenced_by: str | None = None,
        result: Any = None,
        stored: StoredResult | None = None,
        error: str | None = None,
        message: str | None = None,
        checkpoint: tuple[int, str] | None = None,
    ) -> bool:
        """Move `job` from one of `from_` to the terminal `status`; True if this call ended it.

        `stored` is how `result` is kept (results.py): its JSON goes into the row as it is, or only
        the key and size of its object. `checkpoint` (its sequence number and JSON), the holder's
        newest, goes into the row with the end: a FAILED or CANCELLED job is retried from it
        (POST /jobs/{id}/retry), while Redis drops its copy with the final view.

        With `fenced_by` (the token of the worker that holds the job) the UPDATE only wins while
        that token is the job's fence, the job's progress is written too (only the holder knows
        progress newer than the row), and the holder's lease is released. On success `job` holds
        the final state; on a miss it is left as it was.
        """
        if not status.terminal:
            raise ValueError(f"{status.value} is not a terminal state")
        now = utcnow()
        progress = 100 if status is JobStatus.COMPLETED else job.progress
        final_message = clip_message(message or job.message)
        columns: dict[str, Any] = {"result": result, "error": error, "finished_at": now, "updated_at": now}
        if job.callback_url is not None:
            columns["callback_due_at"] = now  # from here on the row is the webhook's outbox
        if stored is not None:
            result = None if stored.key else result
            columns.update(
                result=None if stored.text is None else EncodedJson(stored.text),
                result_bytes=stored.size,
                result_key=stored.key,
            )
        if job.held:
            columns["held"] = False
        if checkpoint is not None:
            columns.update(checkpoint_seq=checkpoint[0], checkpoint=EncodedJson(checkpoint[1]))
        if fenced_by is not None:
            columns.update(progress=progress, progress_detail=job.progress_detail, message=final_message)
        elif message is not None:
            columns["message"] = final_message
        if not self._store.transition(job.id, from_=from_, to=status, fenced_by=fenced_by, **columns):
            if fenced_by is not None:
                log.warning("job %s was finished by someone else, or another worker holds it", job.id)
                self.release_quietly(job.id, fenced_by)
            return False
        was_held, job.held = job.held, False
        took_room = not was_held and job.status is not JobStatus.WAITING  # a waiting job is not queued
        job.status, job.result, job.error, job.message = status, result, error, final_message
        if stored is not None:
            job.result_bytes, job.result_key = stored.size, stored.key
        job.progress, job.finished_at, job.updated_at = progress, now, now
        job.eta_seconds = None  # nothing left to estimate; MySQL does not keep it either
        waiters = self._publish(job, fenced_by, ride_out=True)
        observability.count(f"Jobs{status.value.title()}")
        if job.started_at is not None:
            observability.milliseconds("JobDuration", (now - as_utc(job.started_at)).total_seconds() * 1000)
        log.info("job finished", extra={"job_id": job.id, "status": status.value, "error": error})
        if self._outbox is not None:
            self._outbox.after_end(job)
        if self._holds is not None and took_room:  # a held or waiting job took no room: it frees none
            self._holds.after_end(job)
        self._settle(waiters)
        return True

    def cancel_unstarted(self, jobs: list[Job], *, owner: str, message: str) -> list[Job]:
        """`end` of several of the owner's unstarted jobs as CANCELLED, in bulk: one guarded UPDATE
        (`status IN` the unstarted states), the final views in one pipeline, one metric and log line,
        their webhooks (one UPDATE marks them) and as many held jobs released as the ended ones that
        were not held made room for. Returns the jobs this call ended, in their final state."""
        now = utcnow()
        final_message = clip_message(message) or message
        unstarted = [status for status in JobStatus if status.unstarted]
        ids = [job.id for job in jobs]
        cancelled = JobStatus.CANCELLED
        won = set(self._store.end_many(ids, owner=owner, from_=unstarted, to=cancelled, message=final_message, at=now))
        ended = [job for job in jobs if job.id in won]
        if not ended:
            return []
        room = sum(not job.held and job.status is not JobStatus.WAITING for job in ended)  # as `end` counts it
        for job in ended:
            job.status, job.message, job.finished_at, job.updated_at = JobStatus.CANCELLED, final_message, now, now
            job.held, job.eta_seconds = False, None
        waiters: list[str] = []
        try:
            snapshots = [job.snapshot() for job in ended]
            waiters = self._hot.ride_out(lambda: self._hot.write_final_many(snapshots), seconds=RIDE_OUT_SECONDS)
        except errors.HotStateUnavailable:
            # As for `end`: GET repairs the views from MySQL, the sweeper settles the waiters.
            log.warning("%d cancelled jobs: final views not written, Redis unavailable", len(ended), exc_info=True)
        observability.count("JobsCancelled", len(ended))
        log.info("jobs cancelled", extra={"job_ids": [job.id for job in ended][:20], "count": len(ended)})
        if self._outbox is not None:
            self._outbox.after_ends(ended)
        if self._holds is not None:
            self._holds.after_ends(owner, room)
        self._settle(tuple(dict.fromkeys(waiters)))
        return ended

    def cancel_waiter(self, job: Job, error: str) -> bool:
        """End a WAITING job whose dependency did not complete as CANCELLED (dependencies.py)."""
        return self.end(job, JobStatus.CANCELLED, from_=(JobStatus.WAITING,), error=error, message=error)

    def _settle(self, waiters: tuple[str, ...]) -> None:
        if waiters and self._dependencies is not None:
            self._dependencies.settle(waiters, self.cancel_waiter)

    def time_out(self, job: Job, *, fenced_by: str | None = None, checkpoint: tuple[int, str] | None = None) -> bool:
        """End a RUNNING job that ran past its timeoutSeconds as FAILED; True if this call ended it."""
        return self.end(
            job,
            JobStatus.FAILED,
            from_=(JobStatus.RUNNING,),
            fenced_by=fenced_by,
            error=timeout_error(job),
            checkpoint=checkpoint,
        )

    def publish(self, job: Job) -> None:
        """Put a terminal job's final view (as MySQL holds it) in Redis again, best effort, one try."""
        if not job.status.terminal:
            raise ValueError(f"job {job.id} is {job.status.value}: only a final view is published")
        # A final write that missed Redis missed the waiters too: settle them now.
        self._settle(self._publish(job, None, ride_out=False))

    def release_quietly(self, job_id: str, token: str) -> None:
        """Give the lease up if Redis answers; else it expires by itself."""
        try:
            self._hot.release(job_id, token)
        except errors.HotStateUnavailable:
            pass

    def _publish(self, job: Job, token: str | None, *, ride_out: bool) -> tuple[str, ...]:
        """Write the final view; returns the jobs registered as waiting for this one."""
        snapshot = job.snapshot()
        try:
            outcome = self._hot.ride_out(
                lambda: self._hot.write(snapshot, seq=FINAL_SEQ, lease=token),
                seconds=RIDE_OUT_SECONDS if ride_out else 0,
            )
        except errors.HotStateUnavailable:
            # MySQL is final; GET repairs Redis from it (see the module docstring); the sweeper
            # settles the waiters (dependencies.py).
            log.warning("job %s: final view not written, Redis unavailable (MySQL holds it)", job.id, exc_info=True)
            return ()
        return outcome.waiters
