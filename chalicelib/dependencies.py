"""Jobs that wait for others: `dependsOn`, and a batch's `then` (which depends on every member).

A waiting job is stored WAITING with a row in `job_dependencies` per job it waits for, in the
transaction that inserts it, and no message. It is settled (`settle`) when one of its dependencies
ends; settling asks MySQL, in one statement, where all of them are:

- one has not ended: it waits on;
- all ended and one of them did not complete: it is CANCELLED, `error: "dependency <id> FAILED"`
  (unless it runs on failure: a `then` with `thenOnFailure: "run"`), and its own waiters after it;
- all completed: WAITING -> PENDING (a guarded UPDATE, so of two settles at once one releases it),
  then its message goes out (`sent` is cleared first: a crash before the send leaves the outbox's
  rule a row to send).

Who settles: the final write of each dependency. A waiter registers itself in Redis with each of
its dependencies (`HotState.add_waiters`), after its insert and before its check; a dependency's
final Redis write (lifecycle.py) returns its waiters in the same round trip, so a job nobody waits
for pays nothing. The order makes the last end always see the waiter: either the end's Redis
write came after the registration (it returns the waiter) or before it (then its MySQL end came
before the waiter's own check, which finds it ended). Two dependencies ending at once both settle
the waiter; the guarded UPDATE lets one release it, exactly once.

A release lost to a crash between an end and its settle, or to Redis (a flush takes the waiters
sets, an outage the final writes), is the sweeper's (`settle_stale`): WAITING jobs not updated for
`pending_resend_seconds` are settled again, oldest first, a bounded number per pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta

from . import errors, observability
from .hotstate import HotState
from .models import Job, JobStatus, utcnow
from .observability import logger as log
from .queue import JobQueue, carry
from .store import JobStore

#: Most jobs one `dependsOn` may name.
MAX_DEPENDENCIES = 50
#: The sequence of a released job's PENDING view: above the WAITING one written at submit (0).
RELEASED_SEQ = 1

#: How a waiter is cancelled: (the waiter, its error) -> whether this call ended it (Lifecycle.end).
Cancel = Callable[[Job, str], bool]


def failure_error(dependency_id: str, status: JobStatus) -> str:
    """The error of a job cancelled because a job it depends on did not complete."""
    return f"dependency {dependency_id} {status.value}"


class Dependencies:
    """Registers waiting jobs and settles them when their dependencies end."""

    def __init__(self, store: JobStore, hot: HotState, queue: JobQueue):
        self._store = store
        self._hot = hot
        self._queue = queue

    def register(self, waiters: Sequence[tuple[str, str]]) -> None:
        """Register (waiter, dependency) pairs in Redis, so the dependencies' ends settle the waiters.
        Redis down: the sweeper settles them instead (`settle_stale`)."""
        if not waiters:
            return
        try:
            self._hot.add_waiters(list(waiters))
        except errors.HotStateUnavailable:
            log.warning("%d waiters not registered; the sweeper settles them", len(waiters), exc_info=True)

    def settle(self, job_ids: Iterable[str], cancel: Cancel) -> None:
        """Settle each of these WAITING jobs: release it, cancel it, or leave it waiting. Best effort:
        MySQL or SQS down leaves the job to the sweeper."""
        for job_id in job_ids:
            try:
                self._settle(job_id, cancel)
            except errors.DependencyUnavailable:
                log.warning("waiting job %s not settled; the sweeper will", job_id, exc_info=True)

    def _settle(self, job_id: str, cancel: Cancel) -> bool:
        """True if the job is no longer WAITING after this call."""
        state = self._store.dependency_state(job_id)
        if state is None or state.status is not JobStatus.WAITING:
            return True
        if state.active:
            return False
        if state.failed is not None and not state.run_on_failure:
            job = self._store.get_job(job_id)
            if job is not None and job.status is JobStatus.WAITING:
                cancel(job, failure_error(*state.failed))
            return True
        if self._store.release_waiting(job_id, at=utcnow()):
            self._send(job_id)
        return True

    def _send(self, job_id: str) -> None:
        job = self._store.get_job(job_id)
        if job is None or job.status is not JobStatus.PENDING:
            return  # cancelled in between
        try:
            self._hot.write(job.snapshot(), seq=RELEASED_SEQ)
        except errors.HotStateUnavailable:
            log.warning("job %s released; its view stays WAITING until Redis is back", job_id, exc_info=True)
        try:
            self._queue.send_job(job.id, owner=job.owner, priority=job.priority, job=carry(job))
        except errors.QueueUnavailable:
            log.warning("job %s released but not sent; the sweeper will send it", job_id, exc_info=True)
            return  # `sent` is FALSE: the outbox rule sends it
        self._store.mark_sent(job.id)
        observability.count("JobsReleased")
        log.info("job released: its dependencies completed", extra={"job_id": job.id})

    def settle_stale(self, cancel: Cancel, *, quiet_seconds: int, limit: int) -> int:
        """The sweeper's rule: settle WAITING jobs not updated for `quiet_seconds`, oldest first; the
        ones still waiting are touched so the next pass settles others first. How many it settled."""
        now = utcnow()
        stale = self._store.stale(JobStatus.WAITING, updated_before=now - timedelta(seconds=quiet_seconds), limit=limit)
        waiting, settled = [], 0
        for job in stale:
            if self._settle(job.id, cancel):
                settled += 1
            else:
                waiting.append(job.id)
        self._store.touch(waiting, status=JobStatus.WAITING, at=now)
        return settled
