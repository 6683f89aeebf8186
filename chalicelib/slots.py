"""Running slots: how many jobs of one owner, and of one job type, run at once (tenant limits).

An owner's plan caps its running jobs (`maxRunningJobs`, tenants.py), a job type may cap its own
(`max_concurrency`). Before a job starts, its worker takes a slot of each cap that applies, with
the lease already held (hotstate.take_slots: one round trip, all or none). A slot lives as long as
the job's lease: the final write releases the lease, a killed worker's lease expires, and either
way the next job that asks finds the slot free. A job waiting for a retry or a dependency keeps its
lease, and so its slot: it is RUNNING, and its wait is bounded (SQS's 900 s at most).

A job with no free slot is deferred, never waited on: its view reads PENDING `waiting for a free
slot (2 of 2 running: maxRunningJobs of plan basic)`, its lease is given up and its message sent
again with a delay that grows with each deferral (1, 2, 4 ... s up to the DEFER_MAX_SECONDS setting, jittered),
and its record is done: a deferral never counts toward the dead-letter queue, nor as an attempt.
A job already running (a hand-off, a take-over) is counted but never refused, so a cap lowered, or
slots lost with Redis, never stops work in the middle.
"""

from __future__ import annotations

import math
import random

from . import errors, observability
from .hotstate import HotState, Lease, Slot, SlotAnswer
from .jobs import JobTypes
from .models import Job, clip_message
from .observability import logger as log
from .queue import JobQueue, Message
from .tenants import Tenants

#: Delay of a job's first deferral; doubled per deferral in a row, up to DEFER_MAX_SECONDS.
DEFER_BASE_SECONDS = 1
#: Lease kept while the deferral's view is written (the lease is given up right after).
_WRITE_LEASE_SECONDS = 5


def defer_seconds(deferrals: int, rng: random.Random, *, most: int) -> int:
    """Seconds before the `deferrals`-th deferral (1 for the first) tries again: between half the
    ceiling and the ceiling (at most `most`), so deferred jobs neither hammer the queue nor come
    back in step."""
    ceiling = min(most, DEFER_BASE_SECONDS * 2 ** (deferrals - 1))
    return max(1, math.ceil(rng.uniform(ceiling / 2, ceiling)))


class Slots:
    """Takes a job's running slots before it starts, or defers it."""

    def __init__(
        self,
        hot: HotState,
        queue: JobQueue,
        job_types: JobTypes,
        tenants: Tenants,
        rng: random.Random,
        *,
        defer_max_seconds: int,
    ):
        self._hot = hot
        self._defer_max_seconds = defer_max_seconds
        self._queue = queue
        self._job_types = job_types
        self._tenants = tenants
        self._rng = rng

    def caps(self, job: Job) -> list[tuple[Slot, str]]:
        """The slots a job of this owner and type needs, each with what sets its limit."""
        caps = []
        tenant = self._tenants.of(job.owner)
        if tenant is not None:
            limit = tenant.limits.max_running_jobs
            caps.append((Slot(f"owner:{job.owner}", limit), f"maxRunningJobs of plan {tenant.plan}"))
        try:
            type_limit = self._job_types.get(job.type).max_concurrency
        except errors.UnknownJobType:
            type_limit = None  # a type this deployment no longer has: the run fails the job, not this
        if type_limit is not None:
            caps.append((Slot(f"type:{job.type}", type_limit), f"max_concurrency of type {job.type}"))
        return caps

    def admit(self, job: Job, token: str, lease: Lease, message: Message) -> bool:
        """Whether the job, whose lease `token` holds, may run now; if not, it is deferred (and the
        lease given up)."""
        caps = self.caps(job)
        if not caps:
            return True
        answer = self._hot.take_slots(job.id, [slot for slot, _ in caps], running=not job.status.unstarted)
        if answer.taken:
            return True
        why = next(reason for slot, reason in caps if slot == answer.full)
        self._defer(job, token, lease, message, answer, why)
        return False

    def _defer(self, job: Job, token: str, lease: Lease, message: Message, answer: SlotAnswer, why: str) -> None:
        assert answer.full is not None
        deferrals = message.deferrals + 1
        delay = defer_seconds(deferrals, self._rng, most=self._defer_max_seconds)
        job.message = clip_message(f"waiting for a free slot ({answer.running} of {answer.full.limit} running: {why})")
        # The view at the sequence Redis holds, as this lease's holder: the start's first write is newer.
        self._hot.write(job.snapshot(), seq=lease.seq, lease=token, lease_seconds=_WRITE_LEASE_SECONDS)
        self._hot.release(job.id, token)
        self._queue.send_job(job.id, owner=job.owner, priority=job.priority, deferrals=deferrals, delay_seconds=delay)
        kind = answer.full.name.split(":", 1)[0]
        dimensions = {"Reason": kind, **({"Owner": job.owner} if kind == "owner" else {"Type": job.type})}
        observability.count_by("JobsDeferred", dimensions=dimensions)
        log.info("job deferred: %s; trying again in %d s", job.message, delay, extra={"deferrals": deferrals})
