"""Recovery outside the chunk loop: the scheduled sweeper and the dead-letter handler.

The sweeper runs every minute; each pass is bounded in rows (`sweep_max_rows` per rule) and time
(`sweep_max_seconds`). Its rules, in order:

1. timeouts: RUNNING jobs past their timeoutSeconds become FAILED (a live worker stops at its
   next chunk: its write meets the final state);
2. the outbox: PENDING jobs whose send failed (`sent` is FALSE) are sent once they waited
   `pending_resend_seconds`; separately and much later, PENDING jobs whose message went out but
   that have not started for `pending_lost_seconds` (hours: their message must have been lost)
   are sent again. A backlog queued behind others is never sent twice; a job sent twice runs once;
   SCHEDULED jobs (runAt) are sent once they are due within SQS's 900 s delay, with the delay
   left, so they start within about a second of runAt; one sent but not started
   `pending_lost_seconds` after its runAt is sent again;
   before them, recurring schedules (schedules.py) make the SCHEDULED job of each occurrence due
   within a minute and a half, exactly once per occurrence, which the rule above then sends;
3. stalled jobs: RUNNING jobs whose row was not updated for `stall_after_seconds` and which have
   had no lease for at least a lease period, seen by two passes (the worker died and no message
   is in flight: a live holder re-takes a lease lost with a Redis flush at its next chunk), are
   sent again; the next worker takes the job over from its last checkpoint. A job whose hand-off
   was sent and not yet taken waits in the queue, like a sent PENDING job: it is sent again only
   once the hand-off is `pending_lost_seconds` old;
4. webhooks (webhooks/outbox.py): ended jobs whose webhook is not on the webhooks queue
   `webhook_resend_seconds` after the end are queued; queued ones `webhook_lost_seconds` past due
   are queued again;
5. held jobs (holds.py): an owner's held jobs are released up to its free running capacity, in
   case a release was lost (a crash between an end and its release) or the owner's cap was raised;
6. waiting jobs (dependencies.py): WAITING jobs not updated for `pending_resend_seconds` are
   settled again (released, or cancelled when a dependency failed): a release lost to a crash
   between a dependency's end and its settle, or to Redis (a flush, an outage at the final write);
7. retention: finished jobs (and with them their idempotency keys) older than `retention_seconds`
   are deleted, their result objects in RESULTS_BUCKET first (a failed delete keeps the rows for
   the next pass; the bucket's lifecycle rule expires what is left anyway).

The dead-letter handler judges the job of every message SQS moved to the dead-letter queue after
maxReceiveCount receives by the job's own record, not by the message's receives (a crash returns
every unfinished record of its batch): it fails the job (a poison message) only if the job keeps
killing its workers, that is, it is RUNNING and its last take-over found it dead at the very chunk
it is at now (`deaths`, `death_chunk`: no progress since). Any other job is innocent and sent again
with a fresh message carrying the dead letter's lease and hand-off, up to `max_deaths` times in a
row (the count travels in the message); a job a live worker holds is left to it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import batch, errors, observability
from .chunks import running_chunk
from .config import Settings
from .dependencies import Dependencies
from .holds import Holds
from .hotstate import HotState
from .lifecycle import Lifecycle
from .models import Job, JobStatus, utcnow
from .objects import ObjectStore
from .observability import logger as log
from .queue import MAX_DELAY_SECONDS as SQS_MAX_DELAY_SECONDS
from .queue import JobQueue, Message, carry, seconds_until
from .results import Results
from .store import JobStore

if TYPE_CHECKING:
    from .schedules import ScheduleService
from .webhooks.outbox import Outbox

#: Every state a job has before it ends.
ACTIVE = tuple(status for status in JobStatus if not status.terminal)


@dataclass
class SweepReport:
    """What one pass did."""

    timed_out: int = 0
    #: PENDING jobs whose send had failed, sent now.
    pending_sent: int = 0
    #: PENDING jobs whose message went out but must have been lost (not started after pending_lost_seconds).
    lost_sent: int = 0
    #: SCHEDULED jobs sent as they came within SQS's delay of their runAt (or lost, sent again).
    scheduled_sent: int = 0
    #: Jobs made for the occurrences of recurring schedules (schedules.py), and occurrences skipped.
    schedules_fired: int = 0
    schedules_skipped: int = 0
    stalled_sent: int = 0
    #: Ended jobs' webhooks that were not on the webhooks queue (the ender died, or SQS refused), queued now.
    webhooks_sent: int = 0
    #: Queued webhooks long past due (their message must have been lost), queued again.
    webhooks_lost: int = 0
    #: Held jobs released because their owner had room (holds.py): a lost release, a cap raised.
    held_released: int = 0
    #: WAITING jobs settled (released or cancelled) whose last dependency's end did not (dependencies.py).
    waiting_settled: int = 0
    purged: int = 0


class Sweeper:
    """The periodic and dead-letter recovery of jobs no worker will finish by itself."""

    def __init__(
        self,
        store: JobStore,
        hot: HotState,
        queue: JobQueue,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        objects: ObjectStore | None = None,
        outbox: Outbox | None = None,
        holds: Holds | None = None,
        schedules: ScheduleService | None = None,
        dependencies: Dependencies | None = None,
    ):
        self._store = store
        self._schedules = schedules
        self._outbox = outbox
        self._hot = hot
        self._queue = queue
        self._settings = settings
        self._clock = clock
        self._holds = holds
        self._dependencies = dependencies or Dependencies(store, hot, queue)
        self._lifecycle = Lifecycle(store, hot, outbox, holds=holds, dependencies=self._dependencies)
        self._results = None if objects is None else Results(objects, settings)

    def sweep(self) -> SweepReport:
        """One bounded pass of every rule; a rule whose dependency is down is skipped until the next."""
        s = self._settings
        deadline = self._clock() + s.sweep_max_seconds
        report, now = SweepReport(), utcnow()
        rules = (
            ("timed_out", lambda: self._time_out(now, deadline)),
            ("pending_sent", lambda: self._send_pending(now, deadline, sent=False)),
            ("schedules_fired", lambda: self._fire_schedules(now, deadline, report)),
            ("scheduled_sent", lambda: self._send_scheduled(now, deadline)),
            ("lost_sent", lambda: self._send_pending(now, deadline, sent=True)),
            ("stalled_sent", lambda: self._send_stalled(now, deadline)),
            ("webhooks_sent", lambda: self._send_webhooks(now, lost=False)),
            ("webhooks_lost", lambda: self._send_webhooks(now, lost=True)),
            ("held_released", self._release_held),
            ("waiting_settled", self._settle_waiting),
            ("purged", lambda: self._purge(now - timedelta(seconds=s.retention_seconds))),
        )
        for name, rule in rules:
            if self._clock() > deadline:
                break
            try:
                setattr(report, name, rule())
            except errors.DependencyUnavailable as exc:
                log.warning("sweeper: %s skipped: %s", name, exc.message)
        log.info("sweep done", extra=asdict(report))
        for name, value in asdict(report).items():
            observability.count(f"Sweeper{name.title().replace('_', '')}", value)
        return report

    def _release_held(self) -> int:
        """Held jobs whose owner has room (a cap raised, a release lost), sent now (holds.py)."""
        if self._holds is None:
            return 0
        return self._holds.release_due(max_owners=self._settings.sweep_max_rows)

    def _settle_waiting(self) -> int:
        """WAITING jobs quiet for `pending_resend_seconds`, settled again (a release lost to a crash or to Redis)."""
        s = self._settings
        return self._dependencies.settle_stale(
            self._lifecycle.cancel_waiter, quiet_seconds=s.pending_resend_seconds, limit=s.sweep_max_rows
        )

    def _time_out(self, now, deadline: float) -> int:
        failed = 0
        for job in self._store.overdue(now=now, limit=self._settings.sweep_max_rows):
            if self._clock() > deadline:
                break
            failed += int(self._lifecycle.time_out(job))
        if failed:
            log.warning("sweeper failed %d jobs past their timeout", failed)
        return failed

    def _send_pending(self, now, deadline: float, *, sent: bool) -> int:
        """Send the PENDING jobs whose send failed (`sent` False), or whose message went out long ago."""
        s = self._settings
        wait = s.pending_lost_seconds if sent else s.pending_resend_seconds
        waiting = self._store.pending(sent=sent, limit=s.sweep_max_rows, updated_before=now - timedelta(seconds=wait))
        return self._send(waiting, JobStatus.PENDING, now, deadline)

    def _send_stalled(self, now, deadline: float) -> int:
        s = self._settings
        quiet = self._store.stale(
            JobStatus.RUNNING, limit=s.sweep_max_rows, updated_before=now - timedelta(seconds=s.stall_after_seconds)
        )
        orphans = self._hot.orphans(
            [job.id for job in quiet],
            now_ms=int(now.timestamp() * 1000),
            confirm_after_ms=s.lease_seconds * 1000,
            lost_after_ms=s.pending_lost_seconds * 1000,
        )
        return self._send([job for job in quiet if job.id in orphans], JobStatus.RUNNING, now, deadline)

    def _send_webhooks(self, now, *, lost: bool) -> int:
        """Queue the webhooks the outbox rules find (webhooks/outbox.py)."""
        if self._outbox is None:
            return 0
        s = self._settings
        if lost:
            return self._outbox.sweep_lost(now, after_seconds=s.webhook_lost_seconds, limit=s.sweep_max_rows)
        return self._outbox.sweep_waiting(now, after_seconds=s.webhook_resend_seconds, limit=s.sweep_max_rows)

    def _purge(self, finished_before) -> int:
        """Delete finished jobs past retention: their result objects, then their rows."""
        expired = self._store.expired(finished_before=finished_before, limit=self._settings.sweep_max_rows)
        keys = [key for _, key in expired if key]
        if keys and self._results is not None and self._settings.results_bucket is not None:
            self._results.delete(keys)
        elif keys:
            log.warning("sweeper: %d result objects left to the bucket's expiry (no RESULTS_BUCKET)", len(keys))
        return self._store.purge([job_id for job_id, _ in expired])

    def _fire_schedules(self, now, deadline: float, report: SweepReport) -> int:
        """Make the jobs of the schedules' occurrences due soon (schedules.py), before they are sent."""
        if self._schedules is None:
            return 0
        fired = self._schedules.fire_due(
            now, limit=self._settings.sweep_max_rows, stop=lambda: self._clock() > deadline
        )
        report.schedules_skipped = fired.skipped
        return fired.fired

    def _send_scheduled(self, now, deadline: float) -> int:
        """SCHEDULED jobs due within SQS's delay, sent with the delay left (so they start about at
        runAt, not at the next pass); and the ones sent whose message must have been lost."""
        s = self._settings
        due = self._store.scheduled(
            sent=False, due_before=now + timedelta(seconds=SQS_MAX_DELAY_SECONDS), limit=s.sweep_max_rows
        )
        lost = self._store.scheduled(
            sent=True, due_before=now - timedelta(seconds=s.pending_lost_seconds), limit=s.sweep_max_rows
        )
        return self._send(due + lost, JobStatus.SCHEDULED, now, deadline)

    def _send(self, found: list[Job], status: JobStatus, now, deadline: float) -> int:
        """Send each job again (until the deadline); mark the sent ones so the next pass waits. A
        SCHEDULED job's message carries the delay left until its runAt."""
        sent = []
        for job in found:
            if self._clock() > deadline:
                break
            carried = carry(job) if status is JobStatus.PENDING else None  # the worker starts it unread
            delay = seconds_until(job.run_at, now)
            self._queue.send_job(job.id, owner=job.owner, priority=job.priority, delay_seconds=delay, job=carried)
            sent.append(job.id)
        self._store.touch(sent, status=status, at=now)
        if sent:
            log.warning("sweeper sent %d %s jobs again", len(sent), status.value, extra={"job_ids": sent[:20]})
        return len(sent)

    # --- dead letters ----------------------------------------------------------------------------
    def fail_dead_letters(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Fail the job of each dead-lettered record; the answer names records to deliver again."""
        failed = []
        for record in batch.job_records(records, source="dead letter"):
            job_id = record.message.job_id
            try:
                # SQS (and moto) keep counting receives across the redrive: the last is this handler's.
                self._judge(record.message, max(1, record.receive_count - 1))
            except errors.DependencyUnavailable:
                log.warning("dead letter of job %s: dependency down, delivered again", job_id, exc_info=True)
                failed.append(record)
        return batch.response(failed)

    def _judge(self, message: Message, receives: int) -> None:
        """Fail the dead letter's job if its own record shows a crash loop; else send it again."""
        job = self._store.get_job(message.job_id, with_checkpoint=True)
        if job is None or job.status.terminal:
            return
        # The lease, taken as a worker takes it, keeps live workers out and reads the hot checkpoint.
        s, token = self._settings, uuid.uuid4().hex
        lease = self._hot.acquire(
            job.id,
            token,
            lease_seconds=s.lease_seconds,
            now_ms=int(time.time() * 1000),
            queued_for_ms=s.pending_lost_seconds * 1000,
        )
        if not lease.held:
            log.info("dead letter of job %s dropped: a live worker holds the job, or its hand-off", job.id)
            return
        try:
            if self._kills_its_workers(job, lease.checkpoint) or message.dead_letters >= s.max_deaths:
                self._fail_poisoned(job, receives)
                return
            self._queue.resend(message, owner=job.owner, dead_letters=message.dead_letters + 1)
            log.warning("dead letter of job %s: no crash loop of its own, sent again", job.id)
            observability.count("DeadLettersSentAgain")
        finally:
            self._lifecycle.release_quietly(job.id, token)

    @staticmethod
    def _kills_its_workers(job: Job, hot_checkpoint: Any) -> bool:
        """Whether the job's last take-over found its worker dead at the chunk it is still at."""
        chunk = running_chunk((hot_checkpoint, job.checkpoint))
        return job.status is JobStatus.RUNNING and job.deaths >= 1 and job.death_chunk == chunk

    def _fail_poisoned(self, job: Job, receives: int) -> None:
        error = (
            f"poison message after {receives} receives: the job's message kept failing and was moved "
            "to the dead-letter queue"
        )
        if self._lifecycle.end(job, JobStatus.FAILED, from_=ACTIVE, error=error):
            log.warning("job %s failed: its message was dead-lettered", job.id)
            observability.count("JobsPoisoned")
