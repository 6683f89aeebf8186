"""The chunk loop: runs jobs from SQS records, durably, as AWS really delivers them.

For each record the worker takes the job's lease in Redis (another live holder means a duplicate
delivery: dropped), moves the job PENDING -> RUNNING in MySQL (or claims a RUNNING job whose
holder's lease expired), resumes from the newest checkpoint and runs chunks. The job comes from the
message where it carries the row (queue.carry: a fresh job, a hand-off), else from MySQL: three
statements per job in all (insert, start, final) and one per hand-off. After each chunk ONE
Redis round trip writes progress and checkpoint, renews the lease and reads the cancel flag; no
MySQL write. Before the Lambda time limit the job is handed off: its checkpoint goes to MySQL and a
continuation message carrying the lease to SQS. A failing step is retried from its last checkpoint
by a delayed re-send, as retry.py's policy decides. Every MySQL write of a holder is fenced by its
token (store.py); the end of a job is lifecycle.py's, the batch protocol batch.py's.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import batch, errors, hotstate, observability, queue
from .batch import JobRecord
from .chunks import Invocation, Run, running_chunk
from .config import Settings
from .dependencies import Dependencies
from .holds import Holds
from .hotstate import HotState, Lease, WriteOutcome
from .jobs import JobContext, JobTypes
from .lifecycle import Lifecycle, describe, died_error, overdue_after
from .models import Job, JobStatus, as_utc, clip_message, utcnow
from .objects import ObjectStore
from .observability import logger as log
from .queue import MAX_DELAY_SECONDS as SQS_MAX_DELAY_SECONDS
from .queue import JobQueue, Message, carry
from .results import Results, StoredResult
from .retry import RetryPolicy
from .slots import Slots
from .store import EncodedJson, JobStore
from .tenants import Tenants
from .webhooks.outbox import Outbox

if TYPE_CHECKING:
    from concurrent.futures import Future

#: How early a scheduled job's message may come and still be started (after waiting the rest out).
EARLY_WAIT_SECONDS = 1.0


class Worker:
    """Runs the jobs named by SQS records."""

    def __init__(
        self,
        store: JobStore,
        hot: HotState,
        queue: JobQueue,
        job_types: JobTypes,
        objects: ObjectStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
        tenants: Tenants | None = None,
        outbox: Outbox | None = None,
        holds: Holds | None = None,
        dependencies: Dependencies | None = None,
    ):
        self._store = store
        self._hot = hot
        self._queue = queue
        self._job_types = job_types
        self._objects = objects
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._dependencies = dependencies or Dependencies(store, hot, queue)
        self._lifecycle = Lifecycle(store, hot, outbox, holds=holds, dependencies=self._dependencies)
        self._results = Results(objects, settings)
        self._slots = Slots(
            hot, queue, job_types, tenants or Tenants(None), self._rng, defer_max_seconds=settings.defer_max_seconds
        )
        #: When a failed step runs again, and when the job fails instead.
        self.retry = retry or RetryPolicy(
            base_seconds=settings.retry_base_seconds, wait_base_seconds=settings.dependency_wait_seconds
        )

    # --- a batch ---------------------------------------------------------------------------------
    def handle_batch(self, records: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
        """Run the job of each record; the answer (batch.response) names the records SQS must deliver again.

        A crash charges only its own job. Lambda deletes a batch's messages only when the
        invocation returns, so a crashed one returns all of them, each with one more receive
        (../shared/notes/lambda-sqs-limits.md). So each record's message is deleted soon after its
        job is done with (ended, handed off, waiting for a retry, dropped; with the others that end
        within half a second, in one request), unless it is the last record, which Lambda deletes a
        moment later; and of the records that came back
        (ApproximateReceiveCount > 1) only the first runs, first, while the others are sent again
        as fresh messages at once: an innocent job never gathers receives behind a crasher.
        Records there is no time left to start are sent again, not failed: running out of time
        must not count toward the dead-letter queue's maxReceiveCount.
        """
        invocation = Invocation(context, reserve_ms=self._settings.handoff_reserve_ms)
        found = batch.job_records(records, source="message")
        back = [record for record in found if record.receive_count > 1]
        deleting: list[tuple[JobRecord, Future[None]]] = []
        kept = self._defer(back[1:], deleting)
        order = back[:1] + [r for r in found if r.receive_count <= 1] + kept
        failed, unstarted = [], []
        try:
            for position, record in enumerate(order, start=1):
                if position == len(order) and deleting:
                    self._queue.flush_deletes()  # the others' deletes go out while the last record runs
                if not invocation.has_time_for(invocation.longest_ms):
                    unstarted.append(record)
                elif not self._run_record(record.message, invocation):
                    failed.append(record)
                elif position < len(order):
                    self._delete(record, deleting)
        finally:
            self._deleted(deleting)
        return batch.response(failed + self._send_again(unstarted))

    def _delete(self, record: JobRecord, deleting: list[tuple[JobRecord, Future[None]]]) -> None:
        """Delete a done record's message soon, so that a later crash of this invocation cannot bring
        it back: the request goes out on the queue's own thread while the next records run, with the
        deletes of those that end within DELETE_LINGER_SECONDS (queue.Deletes), and `_deleted`
        waits for it."""
        if record.receipt_handle and record.queue_arn:  # a record built by hand: nothing to delete
            deleting.append((record, self._queue.delete_soon(record.receipt_handle, queue_arn=record.queue_arn)))

    def _deleted(self, deleting: list[tuple[JobRecord, Future[None]]]) -> None:
        """Send the invocation's deletes and wait for them (a thread's work is frozen with the
        container between invocations); one that failed is Lambda's to delete at the end, or SQS's
        to deliver again."""
        if deleting:
            self._queue.flush_deletes()
        for record, done in deleting:
            try:
                done.result()
            except errors.QueueUnavailable:
                log.warning("job %s: message not deleted; Lambda deletes it at the end", record.message.job_id)

    def _defer(self, records: list[JobRecord], deleting: list[tuple[JobRecord, Future[None]]]) -> list[JobRecord]:
        """Send records that came back again as fresh messages and delete them at once (not after
        the linger: the record run first may be the one that kills this invocation, and the copies
        must not come back with another receive); returns those that could not be sent (they run in
        this invocation instead)."""
        kept = []
        for record in records:
            m = record.message
            try:
                self._queue.resend(m)
            except errors.QueueUnavailable:
                kept.append(record)
                continue
            self._delete(record, deleting)
        if len(kept) < len(records):
            self._queue.flush_deletes()
            log.info("%d records that came back were sent again as fresh messages", len(records) - len(kept))
            observability.count("RecordsDeferred", len(records) - len(kept))
        return kept

    def _run_record(self, message: Message, invocation: Invocation) -> bool:
        """Run one record's job; False when SQS must deliver the record again."""
        with observability.job_context(message.job_id):
            try:
                self.run(message, invocation)
                return True
            except errors.DependencyUnavailable:
                log.warning("job %s: dependency down, SQS will deliver it again", message.job_id, exc_info=True)
            except Exception:
                log.exception("job %s: unexpected error, SQS will deliver it again", message.job_id)
        return False

    def _send_again(self, unstarted: list[JobRecord]) -> list[JobRecord]:
        """Send the records again as new messages; returns those SQS must deliver again instead."""
        failed = []
        for record in unstarted:
            try:
                m = record.message
                self._queue.resend(m)
            except errors.QueueUnavailable:
                log.warning("job %s: could not re-send an unstarted record", record.message.job_id, exc_info=True)
                failed.append(record)
        if unstarted:
            log.info("%d records not started before the time limit were sent again", len(unstarted))
            observability.count("RecordsSentAgain", len(unstarted))
        return failed

    # --- a job -----------------------------------------------------------------------------------
    @observability.traced
    def run(self, message: Message, invocation: Invocation | None = None) -> JobStatus | None:
        """Run the job until it ends, is handed off or waits for a retry.

        Returns the status it left the job in, or None when this worker had nothing to do
        (unknown or finished job, a duplicate delivery, a lease lost to another worker).

        A message that carries its job (queue.carry: a fresh job, a hand-off) is not checked against
        the row first: the start is guarded by what it says, a hand-off by its lease and Redis's
        checkpoint sequence. Any other message, or one those find behind, reads the row.
        """
        invocation = invocation or Invocation(None, reserve_ms=0)
        carried = queue.carried(message)
        job = carried.job if carried is not None else self._row(message.job_id)
        if job is None:
            return None
        observability.job_owner(job.owner)
        if job.status is JobStatus.SCHEDULED and not self._due(job, message):
            return JobStatus.SCHEDULED
        # A continuation or retry inherits its sender's lease, once; anything else brings a new token.
        token, hop = message.lease or uuid.uuid4().hex, message.hop if message.lease else None
        lease = self._acquire(job, token, hop)
        if lease.orphaned:  # the run that took this hand-off died: take the job over, counting the death
            token, hop = uuid.uuid4().hex, None
            lease = self._acquire(job, token, None)
        if not lease.held:
            log.info("job %s is held by a live worker: duplicate delivery dropped", job.id)
            observability.count("DuplicatesDropped")
            return None
        try:
            trusted = carried is not None and _current(carried, token, lease)
            held = job if carried is None or trusted else self._row(job.id)
            if held is None:
                self._lifecycle.release_quietly(job.id, token)
                return None
            if not self._slots.admit(held, token, lease, message):
                return JobStatus.PENDING  # deferred: sent again for later, this record is done
            return self._hold(held, token, lease, invocation, hop or 0, carried=trusted)
        except Exception:
            self._lifecycle.release_quietly(job.id, token)  # so the record's redelivery is not taken for a duplicate
            raise

    def _row(self, job_id: str) -> Job | None:
        """The job's row, if it is there and not finished (a finished one's final view is put back in Redis)."""
        job = self._store.get_job(job_id, with_checkpoint=True)
        if job is None:
            log.error("job %s: no such row, message dropped", job_id)
            return None
        if job.status.terminal:
            # A duplicate or late delivery; make sure Redis shows the final state MySQL holds.
            self._lifecycle.publish(job)
            return None
        return job

    def _due(self, job: Job, message: Message) -> bool:
        """Whether a SCHEDULED job's runAt has come. SQS's delays are whole seconds, rounded down
        when sent, so a message may come up to a second early: that is waited out here (cheaper and
        sooner than another round through SQS). Earlier (a stray message), it is sent again for then
        (at most SQS's longest delay later) and this record is done."""
        assert job.run_at is not None
        early = (as_utc(job.run_at) - utcnow()).total_seconds()
        if early <= EARLY_WAIT_SECONDS:
            time.sleep(max(0.0, early))
            return True
        delay = min(SQS_MAX_DELAY_SECONDS, queue.seconds_until(job.run_at, utcnow()))
        self._queue.send_job(job.id, owner=job.owner, priority=job.priority, delay_seconds=delay)
        log.info("job %s is scheduled for %s: sent again for then", job.id, job.run_at)
        return False

    def _acquire(self, job: Job, token: str, hop: int | None) -> Lease:
        """The lease; a message without a hop finds the job busy while a hand-off of it waits in the
        queue (up to PENDING_LOST_SECONDS): that hand-off carries the job on."""
        s = self._settings
        return self._hot.acquire(
            job.id,
            token,
            lease_seconds=s.lease_seconds,
            hop=hop,
            now_ms=int(time.time() * 1000),
            queued_for_ms=s.pending_lost_seconds * 1000,
        )

    def _hold(
        self, job: Job, token: str, lease: Lease, invocation: Invocation, hop: int, *, carried: bool = False
    ) -> JobStatus | None:
        taken = self._take(job, token, lease, carried=carried)
        if taken is None:
            self._lifecycle.release_quietly(job.id, token)
            return None
        job, fresh = taken
        if job.deaths >= self._settings.max_deaths and job.lease_token == token:
            return self._end(job, token, JobStatus.FAILED, error=died_error(job))
        try:
            run = self._resume(job, token, lease.checkpoint, invocation)
            run.hop = hop
        except Exception as exc:
            if self.retry.redelivers(exc):
                raise
            return self._end(job, token, JobStatus.FAILED, error=describe(exc))
        if lease.seq < hotstate.FINAL_SEQ:
            # Redis may hold a sequence ahead of every checkpoint left (one was lost: issue 16, an
            # evicted checkpoint refused three takeovers' writes): write above it.
            run.seq = max(run.seq, lease.seq)
        if job.cancel_requested or lease.cancel:
            return self._end(job, token, JobStatus.CANCELLED, message="cancelled while running", run=run)
        try:
            if fresh and lease.seq >= hotstate.FINAL_SEQ:
                # A job MySQL has just started has not ended: this final view is the run's before a
                # retry whose reset missed Redis (service.retry). Its writes would all be refused.
                self._hot.reset(job.id, keep_lease=True)
            if fresh:
                outcome = self._checkpoint_riding_out(run)  # polls see RUNNING before the first chunk ends
                if not outcome.written or outcome.cancel:
                    return self._stop(run, outcome)
            return self._loop(run, invocation)
        except errors.DependencyUnavailable as exc:
            return self._wait_for(run, exc)
        except errors.CheckpointTooLarge as exc:  # the platform's ceiling: no retry can shrink the state
            return self._end(job, token, JobStatus.FAILED, error=describe(exc))

    def _take(self, job: Job, token: str, lease: Lease, *, carried: bool) -> tuple[Job, bool] | None:
        """Make `token` the job's holder in MySQL: start it (PENDING) or claim it (RUNNING). Returns the
        job held and whether this call started it, or None if it is not this worker's to run."""
        if not job.status.unstarted:
            return (job, False) if self._claim(job, token, lease) else None
        if self._start(job, token, carried=carried):
            return job, True
        if not carried:
            return None
        # The message was behind the row (the job started, ended or ran before): the row decides.
        row = self._row(job.id)
        return None if row is None else self._take(row, token, lease, carried=False)

    def _start(self, job: Job, token: str, *, carried: bool = False) -> bool:
        """PENDING -> RUNNING in MySQL; False if the job moved on meanwhile (e.g. was cancelled), or,
        `carried`, if the row is not what the message said."""
        now = utcnow()
        if not self._store.start(job.id, token=token, at=now, attempts=job.attempts if carried else None):
            return False
        job.status, job.started_at, job.updated_at, job.attempts = JobStatus.RUNNING, now, now, job.attempts + 1
        observability.count("JobsStarted")
        observability.milliseconds("QueueWait", (now - as_utc(job.run_at or job.created_at)).total_seconds() * 1000)
        log.info("job started", extra={"job_type": job.type, "attempt": job.attempts})
        return True

    def _claim(self, job: Job, token: str, lease: Lease) -> bool:
        """Make `token` the RUNNING job's holder in MySQL too, unless it already is (a hand-off).

        A take-over counts a death of the previous holder at the chunk it was running (`job.deaths`).
        """
        if job.lease_token == token:
            return True
        # Redis knows nothing of the job (lost): a live holder may come back, unless none was ever
        # recorded or the job is to be cancelled anyway (nothing is run twice by ending it).
        if lease.seq == 0 and job.lease_token is not None and not job.cancel_requested and not self._holder_gone(job):
            return False
        hot_checkpoint = lease.checkpoint
        # The previous holder's lease expired: it was killed, stalled, or Redis lost the lease.
        chunk = running_chunk((hot_checkpoint, job.checkpoint))
        if not self._store.claim(job.id, token=token, at=utcnow(), chunk=chunk):
            return False
        job.deaths = job.deaths + 1 if job.death_chunk == chunk else 1
        job.death_chunk, job.lease_token = chunk, token
        log.warning(
            "job taken over from an expired lease",
            extra={"attempt": job.attempts, "deaths": job.deaths, "chunk": chunk},
        )
        observability.count("JobsTakenOver")
        return True

    def _holder_gone(self, job: Job) -> bool:
        """Whether a take-over of a job Redis knows nothing of (flushed, restarted, evicted) may go on.

        The lease went with the rest, so a holder alive through the loss cannot be told from a dead
        one: it re-takes its lease at its next chunk. Only a job first found so a lease period ago is
        taken over; before that this delivery is sent again for then (the chaos run saw a duplicate
        take a live job over just after the flush and redo its chunks since the last hand-off).
        """
        lease_ms = self._settings.lease_seconds * 1000
        now_ms = int(time.time() * 1000)
        waited_ms = now_ms - self._hot.first_found_unheld(job.id, now_ms=now_ms, keep_ms=10 * lease_ms)
        if waited_ms >= lease_ms:
            return True
        delay = max(1, math.ceil((lease_ms - waited_ms) / 1000))
        self._queue.send_job(job.id, owner=job.owner, priority=job.priority, delay_seconds=delay)
        log.info("job %s: Redis lost its state; a live holder gets a lease period to come back", job.id)
        return False

    def _resume(self, job: Job, token: str, hot_checkpoint: Any, invocation: Invocation) -> Run:
        """Set up the run from the newest checkpoint: Redis's or the durable one in MySQL."""
        job_type = self._job_types.get(job.type)
        ctx = self._context(job, invocation)
        payload = self._job_types.check_payload(job_type, job.payload, ctx)
        return Run.resume(job, job_type, ctx, payload, token, checkpoints=(hot_checkpoint, job.checkpoint))

    def _context(self, job: Job, invocation: Invocation) -> JobContext:
        """What the job's type may use: its identity, its objects, the invocation's clock, a logger."""
        s = self._settings
        objects = self._objects.scoped(
            owner=job.owner, job_id=job.id, input_buckets=s.input_buckets, work_bucket=s.work_bucket
        )
        return JobContext(
            job_id=job.id,
            owner=job.owner,
            objects=objects,
            log=log,
            _remaining_ms=invocation.remaining_ms,
            _dependency_results=lambda after, limit: self._dependency_results(job.id, after, limit),
        )

    def _dependency_results(self, job_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        """A page of the outcomes of the jobs `job_id` waited for, as JobContext.dependency_results gives them."""
        page = self._store.dependency_results(job_id, after=after, limit=limit)
        return [
            {
                "jobId": row["id"],
                "status": row["status"].value,
                "result": self._results.read(row["result_key"]) if row["result_key"] else row["result"],
                "error": row["error"],
            }
            for row in page
        ]

    def _loop(self, run: Run, invocation: Invocation) -> JobStatus | None:
        try:
            return self._chunks(run, invocation)
        finally:
            # One metric per run, not per chunk (an EMF entry costs about as much as the rest of a chunk).
            if run.chunks:
                observability.count("Chunks", run.chunks)
                observability.milliseconds("ChunkTime", run.chunks_ms / run.chunks)

    def _chunks(self, run: Run, invocation: Invocation) -> JobStatus | None:
        job = run.job
        ends = overdue_after(job)
        while True:
            if time.time() > ends:
                timed_out = self._lifecycle.time_out(job, fenced_by=run.token, checkpoint=_kept(run))
                return JobStatus.FAILED if timed_out else None
            # The first chunk of an invocation always runs (the record was started with time for
            # it), so a job whose chunk is longer than the margin still moves forward.
            if run.chunks and not invocation.has_time_for(run.longest_ms):
                return self._hand_off(run)
            if run.finished:  # the last chunk ran before a wait for a dependency: only the end is left
                return self._complete(run)
            started = self._clock()
            try:
                step = run.job_type.step(run.payload, run.state, run.ctx)
            except errors.DependencyUnavailable:
                raise  # no failure of the job's: _hold waits for the dependency
            except Exception as exc:
                return self._after_step_error(run, exc)
            elapsed_ms = (self._clock() - started) * 1000
            invocation.longest_ms = max(invocation.longest_ms, elapsed_ms)
            run.observe(step, elapsed_ms)
            if step.finished:
                return self._complete(run)
            outcome = self._checkpoint_riding_out(run)
            if not outcome.written or outcome.cancel:
                return self._stop(run, outcome)

    def _stop(self, run: Run, outcome: WriteOutcome) -> JobStatus | None:
        """End the run after a checkpoint that says stop: a cancel, or another writer is ahead."""
        if outcome.lease_lost:
            log.warning("job %s: another worker holds the lease now, stopping this run", run.job.id)
            return None
        if outcome.cancel:
            return self._end(run.job, run.token, JobStatus.CANCELLED, message="cancelled while running", run=run)
        log.warning("job %s: a newer writer is ahead (a final state), stopping this run", run.job.id)
        return None

    def _checkpoint(self, run: Run, *, lease_seconds: float | None = None) -> WriteOutcome:
        """The one Redis round trip of a chunk: snapshot, state, heartbeat and lease out, cancel flag in."""
        run.seq += 1
        return self._hot.write_chunk(
            run.job,
            run.view,
            seq=run.seq,
            cadence_ms=run.cadence_ms,
            checkpoint=run.checkpoint(),
            lease=run.token,
            lease_seconds=lease_seconds or self._settings.lease_seconds,
        )

    def _checkpoint_riding_out(self, run: Run) -> WriteOutcome:
        """`_checkpoint` through a short Redis outage (issue 16: a restart of about a second abandoned
        running jobs). At the first failed write the checkpoint goes to MySQL, so that GET, answered
        from MySQL meanwhile, shows no progress lost, and a takeover would resume from here; then the
        write is tried again for up to RIDE_OUT_SECONDS (within the invocation's time). If Redis is
        still down, HotStateUnavailable: `_hold` hands the job to a delayed continuation that keeps
        the lease (`_wait_for`)."""
        try:
            return self._checkpoint(run)
        except errors.HotStateUnavailable:
            log.warning("job %s: Redis refused the checkpoint; saving it in MySQL and trying again", run.job.id)
        if not self._save_durably(run):
            return WriteOutcome(written=False, cancel=False, lease_lost=True)
        spare_ms = run.ctx.remaining_ms() - self._settings.handoff_reserve_ms
        seconds = max(0.0, min(hotstate.RIDE_OUT_SECONDS, spare_ms / 1000))
        outcome = self._hot.ride_out(lambda: self._checkpoint(run), seconds=seconds)
        observability.count("RedisBlipsRiddenOut")
        return outcome

    # --- leaving a job unfinished ----------------------------------------------------------------
    def _hand_off(self, run: Run) -> JobStatus | None:
        """Store the checkpoint in MySQL and pass the job, with the lease, to a fresh invocation."""
        job = run.job
        if not self._save_durably(run):
            return None
        self._send_on(run)
        observability.count("HandOffs")
        log.info("job handed off to a fresh invocation", extra={"chunks": run.chunks, "progress": job.progress})
        return JobStatus.RUNNING

    def _after_step_error(self, run: Run, exc: Exception) -> JobStatus | None:
        """After a failed step, as the retry policy decides: FAILED, or a delayed retry from the checkpoint."""
        job = run.job
        decision = self.retry.after_step_error(job, run.job_type, exc, self._rng)
        if not decision.retry:
            log.warning("job %s failed on attempt %d", job.id, job.attempts, exc_info=True)
            return self._end(job, run.token, JobStatus.FAILED, error=decision.error, run=run)
        delay = decision.delay_seconds
        log.warning("job %s: attempt %d failed, retrying in %d s", job.id, job.attempts, delay, exc_info=True)
        job.attempts += 1
        job.error = decision.error
        job.message = clip_message(f"attempt {job.attempts - 1} failed; retrying in {delay} s")
        job.eta_seconds = None
        if not self._save_durably(run, retry_error=job.error):
            return None
        # Hold the lease through the delay: neither a duplicate nor the sweeper starts the job early.
        self._checkpoint(run, lease_seconds=delay + self._settings.lease_seconds)
        self._send_on(run, delay_seconds=delay)
        observability.count("JobsRetried")
        return JobStatus.RUNNING

    def _wait_for(self, run: Run, exc: errors.DependencyUnavailable) -> JobStatus | None:
        """A dependency is down: no attempt used up, the job says what it waits for, and a delayed
        continuation (carrying the lease, so no take-over and no death) goes on from the checkpoint."""
        job, s = run.job, self._settings
        run.waits += 1
        delay = self.retry.wait_seconds(run.waits, self._rng)
        log.warning("job %s: waiting %d s for a dependency: %s", job.id, delay, exc.message)
        observability.count("DependencyWaits")
        job.message = clip_message(errors.sanitise(f"waiting for {exc.message}; trying again in {delay} s"))
        job.eta_seconds = None
        try:  # the view and checkpoint, the lease held through the delay (neither sweeper nor duplicate starts it)
            outcome = self._checkpoint(run, lease_seconds=delay + s.lease_seconds)
            if not outcome.written or outcome.cancel:
                return self._stop(run, outcome)
        except errors.HotStateUnavailable:
            try:  # Redis is what is down: GET serves MySQL, so MySQL carries the wait
                if not self._save_durably(run):
                    return None
            except errors.StoreUnavailable:
                log.warning("job %s: neither Redis nor MySQL took the wait; the continuation goes on", job.id)
        self._send_on(run, delay_seconds=delay)
        return JobStatus.RUNNING

    def _send_on(self, run: Run, *, delay_seconds: int = 0) -> None:
        """Send the continuation (the lease, the next hop), then note it in Redis: until it is taken,
        the job is not an orphan to the sweeper and a late copy of the hop before is stale."""
        hop = run.hop + 1
        job = run.job
        self._queue.send_job(
            job.id,
            owner=job.owner,
            priority=job.priority,
            lease=run.token,
            hop=hop,
            delay_seconds=delay_seconds,
            job=carry(job, seq=run.seq),
        )
        try:
            self._hot.handed_off(run.job.id, run.token, hop=hop, now_ms=int(time.time() * 1000))
        except errors.HotStateUnavailable:  # the sweeper may send it again: a duplicate, which the lease drops
            log.warning("job %s: hand-off sent but not noted in Redis", run.job.id)

    def _save_durably(self, run: Run, *, retry_error: str | None = None) -> bool:
        """The checkpoint into MySQL, fenced by the token; False if another holder took the job."""
        job = run.job
        job.updated_at = utcnow()
        if self._store.save_checkpoint(
            job.id,
            fenced_by=run.token,
            checkpoint=EncodedJson(run.checkpoint()),
            checkpoint_seq=run.seq,
            progress=job.progress,
            progress_detail=job.progress_detail,
            message=job.message,
            at=job.updated_at,
            retry_error=retry_error,
        ):
            return True
        log.warning("job %s: taken over or finished elsewhere; this run stops", job.id)
        return False

    # --- the end ---------------------------------------------------------------------------------
    def _complete(self, run: Run) -> JobStatus | None:
        """After the last chunk: the type's result, its object in S3 when it is large (written before
        the final UPDATE, so no job is COMPLETED without it), then the end; FAILED if it cannot be kept."""
        try:
            result = run.job_type.finish(run.payload, run.state, run.ctx)
            stored = self._results.store(run.job.owner, run.job.id, result)
        except errors.DependencyUnavailable:
            raise  # S3 (or another dependency) down: _hold waits for it, no attempt used
        except errors.ResultTooLarge as exc:  # the platform's ceiling: no type may retry past it
            return self._end(run.job, run.token, JobStatus.FAILED, error=describe(exc))
        except Exception as exc:
            return self._after_step_error(run, exc)
        message = run.job.message
        try:
            return self._end(run.job, run.token, JobStatus.COMPLETED, result=result, stored=stored, message=message)
        except errors.ValueTooLarge as exc:
            # Only a result kept in the row (no RESULTS_BUCKET) can outgrow max_allowed_packet.
            too_large = errors.ResultTooLarge(
                f"result is {stored.size} bytes: {exc.message} (RESULTS_BUCKET keeps large results in S3)"
            )
            return self._end(run.job, run.token, JobStatus.FAILED, error=describe(too_large))

    def _end(
        self,
        job: Job,
        token: str,
        status: JobStatus,
        *,
        result: Any = None,
        stored: StoredResult | None = None,
        error: str | None = None,
        message: str | None = None,
        run: Run | None = None,
    ) -> JobStatus | None:
        """End the job this worker holds (fenced by its token); None if someone else ended or took it.
        Given its `run`, a job that did not complete keeps the run's checkpoint (a retry resumes there)."""
        ended = self._lifecycle.end(
            job,
            status,
            from_=(JobStatus.RUNNING,),
            fenced_by=token,
            result=result,
            stored=stored,
            error=error,
            message=message,
            checkpoint=None if run is None or status is JobStatus.COMPLETED else _kept(run),
        )
        return status if ended else None


def _kept(run: Run) -> tuple[int, str] | None:
    """The run's newest checkpoint for its final write, unless it is over the ceiling (then the
    row keeps the durable one it has)."""
    try:
        return run.seq, run.checkpoint()
    except errors.CheckpointTooLarge:
        return None


def _current(carried: queue.Carried, token: str, lease: Lease) -> bool:
    """Whether the job a message carries may be run as it says, without reading the row.

    A fresh job may (its start is guarded by the status and attempts the message names); a hand-off
    only while it is still its sender's (the lease inherited, not taken over) and Redis holds its
    newest checkpoint (a sequence at least the sender's: else Redis lost it, or missed a write the
    sender made in MySQL); never once Redis shows a final view (the row tells how the job ended).
    """
    if lease.seq >= hotstate.FINAL_SEQ:
        return False
    if carried.job.status is JobStatus.PENDING:
        return True
    return carried.job.lease_token == token and lease.seq >= carried.seq and lease.checkpoint is not None
