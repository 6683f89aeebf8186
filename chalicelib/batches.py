"""Batches: up to MAX_BATCH_JOBS jobs submitted at once, with one status and an optional fan-in.

`POST /batches` validates every job spec first (all or nothing, the errors by index), then stores
the batch row, its jobs and their dependencies in one transaction (the jobs in one multi-row
INSERT), their views, waiters and the batch's own hash in one Redis round trip, and sends the jobs
that can start ten to a SendMessageBatch. A send that fails leaves its row unsent for the
outbox's rule (sweeper.py): the answer is still 202.

The `then` job is a WAITING job that depends on every member (dependencies.py): the last member's
end releases it exactly once, or cancels it with the reason when a member did not complete (unless
`thenOnFailure: "run"`). It reads the members' outcomes through its context
(`JobContext.dependency_results`). Inside a batch a member may depend on an earlier member by index.

`GET /batches/{id}` is one Redis round trip while the batch is hot (HotState.batch reads every
member's view), MySQL's one index range when Redis lacks the batch or a view of one of its jobs
(a flush, an expiry), and, while the batch is active, at most once per `stall_after_seconds`
whatever Redis says (a final write that missed Redis would otherwise leave it RUNNING).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import errors, observability
from .bulk import CANCELLABLE, Filter
from .holds import room, waiting_message
from .hotstate import BatchRecord, HotBatch, HotState
from .jobs import JobContext
from .models import Job, JobStatus, as_utc, isoformat, new_job_id, parse_job_id, utcnow
from .observability import logger as log
from .queue import MAX_DELAY_SECONDS, JobQueue
from .service import JobService, job_of, new_job, parse_depends_on
from .store import Batch, JobStore
from .tenants import Tenants

#: Most jobs of one batch, and most job ids one page of GET /batches/{id} lists.
MAX_BATCH_JOBS = 500
DEFAULT_PAGE, MAX_PAGE = 100, 500
_BATCH_FIELDS = {"jobs", "then", "thenOnFailure", "callbackUrl"}
#: What a member spec may say: a job's fields (dependsOn by index too).
_MEMBER_FIELDS = frozenset(
    {
        "type",
        "payload",
        "maxAttempts",
        "timeoutSeconds",
        "runAt",
        "delaySeconds",
        "callbackUrl",
        "dependsOn",
        "priority",
    }
)
_THEN_FIELDS = frozenset({"type", "payload", "maxAttempts", "timeoutSeconds", "callbackUrl", "priority"})
_THEN_ON_FAILURE = ("cancel", "run")
_UNSTARTED = (JobStatus.SCHEDULED, JobStatus.WAITING, JobStatus.PENDING)
#: What is wrong with one job spec (a 400 of its own); anything else fails the whole request.
_SPEC_ERRORS = (errors.InvalidJson, errors.InvalidRequest, errors.UnknownJobType, errors.InvalidPayload)


@dataclass(frozen=True)
class Submitted:
    """What POST /batches answers: the batch, its jobs in the order given, its `then` job."""

    batch_id: str
    job_ids: list[str]
    then_job_id: str | None
    replayed: bool = False


@dataclass(frozen=True)
class BatchView:
    """A batch as GET /batches/{id} shows it."""

    batch_id: str
    status: JobStatus
    counts: dict[str, int]
    progress: int
    then: dict[str, Any] | None
    job_ids: list[str]
    next_cursor: str | None
    created_at: datetime
    cancelled: bool

    def body(self) -> dict[str, Any]:
        return {
            "batchId": self.batch_id,
            "status": self.status.value,
            "counts": self.counts,
            "progress": self.progress,
            "then": self.then,
            "thenJobId": None if self.then is None else self.then["jobId"],
            "jobIds": self.job_ids,
            "nextCursor": self.next_cursor,
            "createdAt": isoformat(self.created_at),
            "cancelled": self.cancelled,
        }


def batch_status(members: dict[JobStatus, int], then: JobStatus | None, *, cancelled: bool) -> JobStatus:
    """PENDING before any job of the batch started; RUNNING while one is active; then CANCELLED after
    a DELETE, COMPLETED when every member and `then` completed, FAILED otherwise. `members`: how many
    of them are in each status."""
    every = {status for status, n in members.items() if n} | ({then} if then is not None else set())
    if every <= set(_UNSTARTED) and not cancelled:
        return JobStatus.PENDING
    if any(not status.terminal for status in every):
        return JobStatus.RUNNING
    if cancelled:
        return JobStatus.CANCELLED
    return JobStatus.COMPLETED if every <= {JobStatus.COMPLETED} else JobStatus.FAILED


class Batches:
    """Submit, read and cancel batches on behalf of an owner."""

    def __init__(
        self,
        store: JobStore,
        hot: HotState,
        queue: JobQueue,
        jobs: JobService,
        *,
        tenants: Tenants,
        stall_after_seconds: int,
    ):
        self._store = store
        self._hot = hot
        self._queue = queue
        self._jobs = jobs
        self._tenants = tenants
        self._stall_after_ms = stall_after_seconds * 1000

    # --- submit ----------------------------------------------------------------------------------
    @observability.traced
    def submit(self, owner: str, body: Any, *, idempotency_key: str | None = None) -> Submitted:
        """Store and queue a batch (see the module docstring); the 400 lists every invalid spec."""
        if not isinstance(body, dict):
            raise errors.InvalidJson("the body must be a JSON object")
        unknown = set(body) - _BATCH_FIELDS
        if unknown:
            raise errors.InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        specs = body.get("jobs")
        if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_BATCH_JOBS:
            raise errors.InvalidRequest(f"jobs must be a list of 1 to {MAX_BATCH_JOBS} job specs")
        then_on_failure = body.get("thenOnFailure", "cancel")
        if then_on_failure not in _THEN_ON_FAILURE:
            raise errors.InvalidRequest('thenOnFailure must be "cancel" or "run"')
        if "thenOnFailure" in body and body.get("then") is None:
            raise errors.InvalidRequest("thenOnFailure needs a then job")
        tenant = self._tenants.of(owner)
        now = utcnow()
        ids = sorted(new_job_id() for _ in range(len(specs) + 1))  # id order is the order given
        batch_id, then_id = new_job_id(), ids[-1] if body.get("then") is not None else None
        members, problems = [], []
        context = self._jobs.submit_context(owner)
        for index, spec in enumerate(specs):
            try:
                members.append(self._member(owner, spec, tenant, context, ids[index], index, batch_id, now))
            except _SPEC_ERRORS as exc:
                problems.append({"index": index, "message": errors.sanitise(exc.message)})
        then = None
        if then_id is not None:
            try:
                then = self._then(owner, body["then"], tenant, context, then_id, batch_id, now, then_on_failure)
            except _SPEC_ERRORS as exc:
                problems.append({"index": "then", "message": errors.sanitise(exc.message)})
        if problems:
            raise errors.InvalidRequest(f"{len(problems)} of the batch's job specs are invalid", errors=problems)
        callback_url = None if body.get("callbackUrl") is None else self._jobs.check_callback_url(body["callbackUrl"])
        jobs = [job for job, _ in members] + ([then] if then is not None else [])
        outside = {dep for job, _ in members for dep in job.depends_on or () if not dep.startswith("#")}
        self._jobs.check_dependencies(owner, sorted(outside))
        for job, _ in members:  # `#<index>` names an earlier member: its id, in the view too
            if job.depends_on:
                job.depends_on = [ids[int(dep[1:])] if dep.startswith("#") else dep for dep in job.depends_on]
        pairs = [(job.id, dep) for job, _ in members for dep in job.depends_on or ()]
        if then is not None:  # its dependencies are the members (its view says batchId, not dependsOn)
            pairs += [(then.id, job.id) for job, _ in members]
        request_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        batch = Batch(
            id=batch_id,
            owner=owner,
            job_count=len(members),
            then_job_id=then_id,
            then_on_failure=then_on_failure,
            created_at=now,
            callback_url=callback_url,
        )
        sendable = {
            job.id: delay for job, delay in members if job.status is not JobStatus.WAITING and delay is not None
        }
        stored = self._store.insert_batch(
            batch,
            [(job, job.id in sendable) for job in jobs],
            pairs,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        if stored.id != batch_id:
            members_now = [
                job_id for job_id, _, _ in self._store.batch_members(stored.id) if job_id != stored.then_job_id
            ]
            return Submitted(stored.id, members_now, stored.then_job_id, replayed=True)
        held = self._limit(batch, jobs, tenant)
        self._publish(batch, jobs, pairs)
        self._send([job for job in jobs if job.id in sendable and job.id not in held], sendable)
        observability.count("BatchesSubmitted")
        observability.count("JobsSubmitted", len(jobs))
        log.info("batch submitted", extra={"batch_id": batch_id, "jobs": len(jobs)})
        return Submitted(batch_id, [job.id for job, _ in members], then_id)

    def _member(
        self,
        owner: str,
        spec: Any,
        tenant: Any,
        context: JobContext,
        job_id: str,
        index: int,
        batch_id: str,
        now: datetime,
    ) -> tuple[Job, int | None]:
        """A member's job and its delay (None: it is not sent now)."""
        job_type, payload, options = self._jobs.parse_submission(
            owner, spec, tenant, fields=_MEMBER_FIELDS, context=context
        )
        depends_on = parse_depends_on(spec.get("dependsOn"), indices_below=index)
        job, delay = new_job(
            owner, spec, job_type, payload, options, now, depends_on=depends_on, job_id=job_id, batch_id=batch_id
        )
        return job, (delay if delay <= MAX_DELAY_SECONDS else None)

    def _then(
        self,
        owner: str,
        spec: Any,
        tenant: Any,
        context: JobContext,
        job_id: str,
        batch_id: str,
        now: datetime,
        then_on_failure: str,
    ) -> Job:
        job_type, payload, options = self._jobs.parse_submission(
            owner, spec, tenant, fields=_THEN_FIELDS, context=context
        )
        fields = {"batch_id": batch_id, "run_on_failure": then_on_failure == "run"}
        return job_of(owner, job_type, payload, options, now, status=JobStatus.WAITING, job_id=job_id, **fields)

    def _limit(self, batch: Batch, jobs: list[Job], tenant: Any) -> set[str]:
        """With a plan: refuse the batch over maxActiveJobs (its rows deleted: 429), and hold the
        members over the running cap's room (holds.py). The ids of the held members."""
        if tenant is None:
            return set()
        try:
            counts = self._jobs.within_active_limit([job.id for job in jobs], batch.owner, tenant)
        except errors.ActiveJobLimit:
            self._store.delete_batch(batch.id)
            raise
        pending = [job for job in jobs if job.status is JobStatus.PENDING]
        over = min(len(pending), counts.unheld - room(tenant))
        if over <= 0:
            return set()
        held = pending[-over:]
        running = counts.by_status.get(JobStatus.RUNNING, 0)
        message = waiting_message(running, tenant, queued=counts.unheld - running - over)
        self._store.hold_many([job.id for job in held], message=message)
        for job in held:
            job.held, job.message = True, message
        observability.count_by("JobsDeferred", value=len(held), dimensions={"Reason": "held", "Owner": batch.owner})
        return {job.id for job in held}

    def _publish(self, batch: Batch, jobs: list[Job], pairs: list[tuple[str, str]]) -> None:
        """The jobs' views, the waiters and the batch's hash: one round trip, best effort (MySQL
        answers polls and the sweeper settles the waiters while Redis is down)."""
        try:
            self._hot.publish_new([job.snapshot() for job in jobs], waiters=pairs, batch=_record(batch, jobs))
        except errors.HotStateUnavailable:
            log.warning("batch %s: not in Redis (MySQL answers for it)", batch.id, exc_info=True)

    def _send(self, jobs: list[Job], delays: dict[str, int]) -> None:
        failed = self._queue.send_jobs([(job, delays[job.id]) for job in jobs])
        for job_id in failed:  # the row is the outbox: the sweeper sends it
            self._jobs.mark_unsent(job_id)
        if failed:
            log.warning("%d jobs of a batch stored but not sent; the sweeper will send them", len(failed))

    # --- get -------------------------------------------------------------------------------------
    @observability.traced
    def get(self, owner: str, raw_id: str, *, cursor: str | None = None, limit: str | None = None) -> BatchView:
        """The batch: its status, counts, mean progress, `then` and a page of its job ids."""
        batch_id = _parse_batch_id(raw_id)
        page = _page_size(limit)
        hot = self._hot_batch(batch_id)
        if hot is not None:
            meta = json.loads(hot.meta)
            if meta["owner"] != owner:
                raise errors.BatchNotFound(f"no batch {batch_id}")
            batch = _batch_of(batch_id, meta)
            view = _view(batch, hot.members, hot.counts, hot.progress_sum, hot.then_status, cursor, page)
            quiet_since = hot.checked_ms or int(as_utc(batch.created_at).timestamp() * 1000)
            if view.status.terminal or _now_ms() - quiet_since < self._stall_after_ms:
                return view
        return self._read(owner, batch_id, cursor, page)

    def _read(self, owner: str, batch_id: str, cursor: str | None, page: int) -> BatchView:
        """The batch from MySQL (two statements), its Redis hash written again from it."""
        found = self._store.get_batch(batch_id, owner=owner)
        if found is None:
            raise errors.BatchNotFound(f"no batch {batch_id}")
        rows = self._store.batch_members(batch_id)
        members = [(job_id, status, progress) for job_id, status, progress in rows if job_id != found.then_job_id]
        then_status = next((status for job_id, status, _ in rows if job_id == found.then_job_id), None)
        counts = Counter(status for _, status, _ in members)
        try:
            self._hot.put_batch(_record(found, [job_id for job_id, _, _ in members]), checked_ms=_now_ms())
        except errors.HotStateUnavailable:
            pass  # the next poll reads MySQL again
        progress_sum = sum(progress for _, _, progress in members)
        return _view(found, [job_id for job_id, _, _ in members], counts, progress_sum, then_status, cursor, page)

    def _hot_batch(self, batch_id: str) -> HotBatch | None:
        """The batch as Redis has it, or None when Redis lacks it or a view of one of its jobs."""
        try:
            found = self._hot.batch(batch_id)
        except errors.HotStateUnavailable:
            log.warning("Redis unavailable, reading batch %s from MySQL", batch_id, exc_info=True)
            return None
        return None if found is None or found.missing else found

    # --- cancel ----------------------------------------------------------------------------------
    @observability.traced
    def cancel(self, owner: str, raw_id: str) -> BatchView:
        """Cancel every unfinished job of the batch, its `then` first (so no member's end releases
        it); answers the batch as it is then (RUNNING until its running jobs stop at their next chunk)."""
        batch_id = _parse_batch_id(raw_id)
        batch = self._store.get_batch(batch_id, owner=owner)
        if batch is None:
            raise errors.BatchNotFound(f"no batch {batch_id}")
        self._store.mark_batch_cancelled(batch_id)
        if batch.then_job_id is not None:
            self._cancel_quietly(owner, batch.then_job_id)
        # The bulk cancel's statements (bulk.py): the unstarted members in one UPDATE, the running flagged.
        members = Filter(CANCELLABLE, batch_id=batch_id)
        while self._jobs.bulk.cancel(owner, members).next_cursor is not None:
            pass  # more than one call's bound: the ones done no longer match
        return self._read(owner, batch_id, None, DEFAULT_PAGE)  # and its hash, `cancelled` now

    def _cancel_quietly(self, owner: str, job_id: str) -> None:
        try:
            self._jobs.cancel(owner, job_id)
        except errors.JobFinished:
            pass  # it ended meanwhile


def _view(
    batch: Batch,
    members: list[str],
    counts: dict[JobStatus, int],
    progress_sum: int,
    then_status: JobStatus | None,
    cursor: str | None,
    page: int,
) -> BatchView:
    """The batch as GET shows it, with the page of its members' ids after `cursor`."""
    start = 0
    if cursor is not None:
        try:
            start = members.index(parse_job_id(cursor)) + 1
        except (errors.InvalidJobId, ValueError):
            raise errors.InvalidRequest("cursor is not one this API returned") from None
    shown = members[start : start + page]
    more = start + page < len(members)
    then = None
    if batch.then_job_id is not None and then_status is not None:
        then = {"jobId": batch.then_job_id, "status": then_status.value}
    return BatchView(
        batch_id=batch.id,
        status=batch_status(counts, then_status, cancelled=batch.cancelled),
        counts={status.value: counts.get(status, 0) for status in JobStatus},
        progress=round(progress_sum / len(members)) if members else 0,
        then=then,
        job_ids=shown,
        next_cursor=shown[-1] if more and shown else None,
        created_at=as_utc(batch.created_at),
        cancelled=batch.cancelled,
    )


def _record(batch: Batch, members: list[Job] | list[str]) -> BatchRecord:
    """The batch's hash: its meta, its members' ids (the `then` job left out), its `then` job's id."""
    ids = [member if isinstance(member, str) else member.id for member in members]
    return BatchRecord(batch.id, _meta(batch), [i for i in ids if i != batch.then_job_id], batch.then_job_id)


def _meta(batch: Batch) -> str:
    """The batch's row as its Redis hash keeps it."""
    return json.dumps(
        {
            "owner": batch.owner,
            "count": batch.job_count,
            "then": batch.then_job_id,
            "thenOnFailure": batch.then_on_failure,
            "createdAt": int(as_utc(batch.created_at).timestamp() * 1000),
            "cancelled": batch.cancelled,
        },
        separators=(",", ":"),
    )


def _now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


def _batch_of(batch_id: str, meta: dict[str, Any]) -> Batch:
    return Batch(
        id=batch_id,
        owner=meta["owner"],
        job_count=meta["count"],
        then_job_id=meta["then"],
        then_on_failure=meta["thenOnFailure"],
        created_at=datetime.fromtimestamp(meta["createdAt"] / 1000, tz=UTC),
        cancelled=meta["cancelled"],
    )


def _parse_batch_id(raw: str) -> str:
    try:
        return parse_job_id(raw)
    except errors.InvalidJobId:
        raise errors.BatchNotFound(f"no batch {raw[:40]!r}") from None


def _page_size(limit: str | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    try:
        size = int(limit)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise errors.InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
    return size
