"""Held jobs: an owner's jobs beyond its running cap wait in MySQL, not in the shared queue.

A running cap alone (slots.py) leaves a backlog in the queue: a tenant capped at 1 running job that
submits 500 puts 500 messages ahead of everybody else's; the workers receive them, find no free
slot and defer them, again and again, and another tenant's job queued behind waits for that churn
(the fairness bench measured its p95 at 19-27 s behind 500, for a job that runs in 0.1 s). So:

- At submit, a job that finds its owner's queued and running jobs (PENDING not held, RUNNING)
  already at twice `maxRunningJobs` (`room`) is *held*: stored PENDING like any other, `held` set,
  no message sent. Its view reads `waiting for a free slot (1 of 1 running, 1 queued:
  maxRunningJobs of plan P)`. The few queued beyond the cap take a slot the moment it frees (a dead
  worker's lease expiring frees its slot for them, slots.py), and are deferred by the worker while
  none is free; only a backlog beyond them waits in MySQL.
- Every end of one of the owner's jobs that was not held (Lifecycle.end: a worker's final write, a
  cancel, a timeout, a poison message) releases the owner's oldest held job: a guarded UPDATE clears
  `held` (and `sent`, so the outbox covers a crash before the send), the message goes out, `sent` is
  set again. Two ends racing for one held job: the UPDATE lets one win.
- The sweeper is the safety net (`release_due`): an owner whose held jobs could run (its cap raised,
  a release lost to a crash or to a submit that held a job just as the last one ended) gets them
  released up to its free capacity.

The slots stay the authority on what runs: a release that overshoots (two ends at once, a cap
lowered meanwhile) is deferred by the worker as before. A held job is never sent by the outbox's
rules (it was not lost) and a stray message for it does not start it (store.start).

Cost: only owners with a plan pay. Submit: one UPDATE more for a held job (instead of the SQS send).
End: one indexed SELECT for the oldest held job; a release, two UPDATEs and one SQS send.
"""

from __future__ import annotations

from . import errors, observability
from .models import Job, JobStatus, clip_message
from .observability import logger as log
from .queue import JobQueue
from .store import ActiveCounts, JobStore
from .tenants import Tenant, Tenants


def room(tenant: Tenant) -> int:
    """How many of the tenant's jobs may be running or queued before more are held: twice its cap,
    so a slot that frees has a job queued for it, and no more than that many are deferred in turn."""
    return 2 * tenant.limits.max_running_jobs


def waiting_message(running: int, tenant: Tenant, *, queued: int) -> str:
    """What a held job of this tenant says it waits for."""
    limit = tenant.limits.max_running_jobs
    text = (
        f"waiting for a free slot ({running} of {limit} running, {queued} queued: maxRunningJobs of plan {tenant.plan})"
    )
    return clip_message(text) or text


class Holds:
    """Holds an owner's jobs over its running cap at submit and releases them as others end."""

    def __init__(self, store: JobStore, queue: JobQueue, tenants: Tenants):
        self._store = store
        self._queue = queue
        self._tenants = tenants

    @staticmethod
    def should_hold(tenant: Tenant, counts: ActiveCounts) -> bool:
        """Whether a job just inserted (counted in `counts`) finds its owner's running and queued
        jobs already at `room`."""
        return counts.unheld > room(tenant)

    def hold(self, job: Job, tenant: Tenant, counts: ActiveCounts) -> bool:
        """Hold the job just inserted; False if it moved on meanwhile (a cancel)."""
        running = counts.by_status.get(JobStatus.RUNNING, 0)
        queued = counts.unheld - running - 1  # this one is not queued
        job.message = waiting_message(running, tenant, queued=queued)
        if not self._store.hold(job.id, message=job.message):
            return False
        job.held = True
        observability.count_by("JobsDeferred", dimensions={"Reason": "held", "Owner": job.owner})
        log.info("job held: %s", job.message, extra={"job_id": job.id})
        return True

    def after_end(self, job: Job) -> None:
        """A job of the owner that was not held ended: release the owner's oldest held job."""
        self.after_ends(job.owner, 1)

    def after_ends(self, owner: str, count: int) -> None:
        """`count` jobs of the owner that were not held ended: release as many of its oldest held ones."""
        try:
            if count and self._tenants.of(owner) is not None:
                self.release(owner, count)
        except errors.DependencyUnavailable:
            # The ends stand; the sweeper's pass releases what this one could not.
            log.warning("held jobs of %s not released after %d ended", owner, count, exc_info=True)

    def release(self, owner: str, count: int) -> list[str]:
        """Release up to `count` of the owner's oldest held jobs; returns the ids this call released."""
        released = []
        for job_id, priority in self._store.held(owner, limit=count):
            if not self._store.release_held(job_id):
                continue  # released by someone else, or cancelled
            try:
                self._queue.send_job(job_id, owner=owner, priority=priority)
            except errors.QueueUnavailable:
                log.warning("held job %s released but not sent; the sweeper will send it", job_id, exc_info=True)
                continue  # `sent` is FALSE: the outbox rule sends it
            self._store.mark_sent(job_id)
            released.append(job_id)
        if released:
            log.info("held jobs released", extra={"owner": owner, "job_ids": released})
            observability.count("HeldJobsReleased", len(released))
        return released

    def release_due(self, *, max_owners: int) -> int:
        """The sweeper's rule: release every owner's held jobs up to its room; how many it released.
        An owner no longer on a plan has no cap: all of its held jobs go."""
        released = 0
        for owner in self._store.owners_with_held(limit=max_owners):
            tenant = self._tenants.of(owner)
            counts = self._store.count_active(owner)
            free = counts.held if tenant is None else room(tenant) - counts.unheld
            if free > 0:
                released += len(self.release(owner, min(free, counts.held)))
        return released
