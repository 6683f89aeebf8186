"""The use cases behind the routes: submit, get, cancel and list jobs.

Knows the order of the I/O (MySQL first: it is the truth) and which failures a request survives
(a queue that refuses a message leaves the row as the outbox; Redis down means MySQL answers).
Knows nothing of HTTP: http.py and app.py turn these answers into responses.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from . import errors, observability
from .bulk import BulkCancel, Cancelled, parse_filter
from .config import Settings
from .dependencies import MAX_DEPENDENCIES, Dependencies
from .holds import Holds
from .hotstate import READ_RIDE_OUT_SECONDS, RIDE_OUT_SECONDS, HotJob, HotState
from .jobs import JobContext, JobType, JobTypes
from .lifecycle import Lifecycle
from .models import Job, JobSnapshot, JobStatus, Priority, as_utc, new_job_id, parse_job_id, utcnow
from .objects import ObjectStore
from .observability import logger as log
from .queue import MAX_DELAY_SECONDS as SQS_MAX_DELAY_SECONDS
from .queue import JobQueue, carry, seconds_until
from .results import Results
from .store import ActiveCounts, DependencyState, JobStore
from .tenants import Tenant, Tenants
from .webhooks import guard
from .webhooks.outbox import Outbox

#: Bounds of what a submission or a list may ask for (the OpenAPI document publishes these).
MAX_ATTEMPTS = 20
MAX_TIMEOUT_SECONDS = 7 * 86400
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
#: Most job ids one `GET /jobs?ids=` may name.
MAX_IDS = 100
_SUBMIT_FIELDS = {
    *("type", "payload", "maxAttempts", "timeoutSeconds", "runAt", "delaySeconds", "callbackUrl", "dependsOn"),
    "priority",
}
#: What a schedule's job template may not set (its occurrence gives the time), and what it may.
_UNSCHEDULABLE = frozenset({"runAt", "delaySeconds", "dependsOn"})
_TEMPLATE_FIELDS = frozenset(_SUBMIT_FIELDS - _UNSCHEDULABLE)
#: How far ahead a job may be scheduled (runAt, delaySeconds): a year.
MAX_DELAY_SECONDS = 365 * 86400

# Polls are advised no faster than progress can change, and no slower than this (seconds).
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 30
#: A hot view of an active job quiet for longer than this many chunks (and this many seconds) may be
#: a final write that missed Redis: GET asks MySQL (issue 16: a FAILED job read RUNNING for 24 h).
QUIET_CADENCES, QUIET_MIN_SECONDS = 3, 2


@dataclass(frozen=True)
class Answer:
    """A job as a client may see it, and how long a polite client waits before polling again."""

    job: JobSnapshot
    retry_after: int | None = None
    #: A RUNNING job whose last checkpoint is older than `stall_after_seconds`.
    stalled: bool = False
    #: For submit: the Idempotency-Key matched an earlier request and no new job was made.
    replayed: bool = False
    #: For get: a fresh presigned URL of the result, when it is an object in RESULTS_BUCKET.
    result_url: str | None = None


@dataclass(frozen=True)
class JobResult:
    """A completed job's result: the value itself when inline, else a URL to fetch it from."""

    value: Any = None
    url: str | None = None


@dataclass(frozen=True)
class Usage:
    """A client's plan, its limits (None: this deployment has no tenants) and its unfinished jobs."""

    client: str
    tenant: Tenant | None
    active: ActiveCounts


@dataclass(frozen=True)
class Page:
    """One page of a caller's jobs, newest first."""

    answers: list[Answer]
    next_cursor: str | None
    #: For a list by ids: the smallest Retry-After of its active jobs (None when none is active).
    retry_after: int | None = None


def retry_after(cadence_seconds: float | None) -> int:
    """Seconds between useful polls, from the seconds a chunk takes, clamped to 1-30."""
    if not cadence_seconds:
        return RETRY_AFTER_MIN
    return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, math.ceil(cadence_seconds)))


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _int_option(body: dict[str, Any], name: str, default: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise errors.InvalidRequest(f"{name} must be an integer from 1 to {high}")
    return value


#: The states a retry starts from.
RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


def _from_start(body: Any) -> bool:
    """A retry's `fromStart` (false when there is no body)."""
    if body is None:
        return False
    if not isinstance(body, dict) or set(body) - {"fromStart"} or not isinstance(body.get("fromStart", False), bool):
        raise errors.InvalidRequest('the body must be {"fromStart": true|false} or empty')
    return body.get("fromStart", False)


def _not_retryable(job: Job) -> errors.JobNotRetryable:
    return errors.JobNotRetryable(
        f"job {job.id} is {job.status.value}: only a FAILED or CANCELLED job can be retried", status=job.status.value
    )


def _retried_status(job: Job, dependencies: DependencyState | None) -> JobStatus:
    """What a retry makes of the job: PENDING, or WAITING again while a job it depends on has not
    ended (its `dependsOn`, or a `then`'s members); a 409 while one ended without completing, since
    it would only be cancelled again: that one is to be retried first."""
    if dependencies is None or dependencies.total == 0:
        return JobStatus.PENDING
    if dependencies.failed is not None and not dependencies.run_on_failure:
        failed_id, failed_status = dependencies.failed
        raise errors.JobNotRetryable(
            f"job {job.id} depends on {failed_id}, which is {failed_status.value}: retry that job first",
            status=job.status.value,
        )
    return JobStatus.WAITING if dependencies.active else JobStatus.PENDING


def _as_retried(job: Job, *, status: JobStatus, from_start: bool, at: datetime, message: str) -> None:
    """`job` (its row before the retry) as store.retry left the row."""
    job.status, job.previous_error, job.error = status, job.error or job.previous_error, None
    job.attempts, job.cancel_requested, job.held, job.message = 0, False, False, message
    job.result = job.result_bytes = job.result_key = job.run_at = job.started_at = job.finished_at = None
    job.lease_token, job.deaths, job.death_chunk, job.updated_at, job.eta_seconds = None, 0, None, at, None
    if from_start:
        job.checkpoint, job.progress, job.progress_detail = None, 0, None


def parse_priority(body: dict[str, Any]) -> Priority:
    """The submission's `priority`: "high" or "normal" (the default when it names none)."""
    raw = body.get("priority", Priority.NORMAL.value)
    if raw not in (Priority.HIGH.value, Priority.NORMAL.value):
        raise errors.InvalidRequest('priority must be "high" or "normal"')
    return Priority(raw)


def parse_run_at(body: dict[str, Any], now: datetime) -> datetime | None:
    """When the submission asks its job to start: `runAt` (RFC 3339 with an offset, in the future,
    at most MAX_DELAY_SECONDS ahead) or `delaySeconds` (0 to MAX_DELAY_SECONDS); None: at once."""
    if "runAt" in body and "delaySeconds" in body:
        raise errors.InvalidRequest("give runAt or delaySeconds, not both")
    if "delaySeconds" in body:
        delay = body["delaySeconds"]
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_SECONDS:
            raise errors.InvalidRequest(f"delaySeconds must be an integer from 0 to {MAX_DELAY_SECONDS}")
        return now + timedelta(seconds=delay) if delay else None
    if "runAt" not in body:
        return None
    run_at = body["runAt"]
    try:
        moment = datetime.fromisoformat(run_at) if isinstance(run_at, str) and "T" in run_at.upper() else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise errors.InvalidRequest(
            "runAt must be an RFC 3339 date-time with an offset, e.g. 2026-12-24T18:00:00+01:00"
        )
    moment = moment.astimezone(UTC)
    if moment <= now:
        raise errors.InvalidRequest("runAt must be in the future")
    if moment - now > timedelta(seconds=MAX_DELAY_SECONDS):
        raise errors.InvalidRequest("runAt must be at most a year ahead")
    return moment


def new_job(
    owner: str,
    spec: dict[str, Any],
    job_type: JobType,
    payload: dict[str, Any],
    options: dict[str, Any],
    now: datetime,
    *,
    depends_on: list[str],
    job_id: str | None = None,
    batch_id: str | None = None,
) -> tuple[Job, int]:
    """The job of a checked spec (`parse_submission`'s parts): WAITING when it depends on others,
    SCHEDULED when it has a runAt (or delaySeconds), else PENDING; and the whole seconds until it is
    due, rounded down (the message comes at most a second early and the worker waits that out)."""
    run_at = parse_run_at(spec, now)
    if depends_on and run_at is not None:
        raise errors.InvalidRequest("give dependsOn or runAt/delaySeconds, not both")
    status = JobStatus.WAITING if depends_on else JobStatus.PENDING if run_at is None else JobStatus.SCHEDULED
    job = job_of(
        owner,
        job_type,
        payload,
        options,
        now,
        status=status,
        job_id=job_id,
        run_at=run_at,
        batch_id=batch_id,
        depends_on=depends_on or None,
    )
    return job, seconds_until(run_at, now)


def job_of(
    owner: str,
    job_type: JobType,
    payload: dict[str, Any],
    options: dict[str, Any],
    now: datetime,
    *,
    status: JobStatus,
    job_id: str | None = None,
    **fields: Any,
) -> Job:
    """A new job of `parse_submission`'s parts, created now, in `status` (a fresh id unless given)."""
    return Job(
        id=job_id or new_job_id(),
        owner=owner,
        type=job_type.name,
        status=status,
        payload=payload,
        created_at=now,
        updated_at=now,
        **fields,
        **options,
    )


def parse_depends_on(raw: Any, *, indices_below: int = 0) -> list[str]:
    """The distinct job ids of a `dependsOn` list (empty for none), in canonical form; a 400 for
    anything else. Inside a batch (`indices_below`: the member's own index) an integer names an
    earlier member: those come back as `#<index>` for the batch to resolve."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_DEPENDENCIES:
        raise errors.InvalidRequest(f"dependsOn must be a list of 1 to {MAX_DEPENDENCIES} job ids")
    ids = []
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < indices_below:
            ids.append(f"#{item}")
            continue
        try:
            ids.append(parse_job_id(item if isinstance(item, str) else ""))
        except errors.InvalidJobId:
            earlier = (
                f" or the index of an earlier job of the batch (0 to {indices_below - 1})" if indices_below else ""
            )
            raise errors.InvalidRequest(f"dependsOn: {str(item)[:40]!r} is not a job id{earlier}") from None
    return list(dict.fromkeys(ids))


def parse_job_ids(raw: str) -> list[str]:
    """The distinct job ids of a comma-separated list, in canonical form; a 400 when there are none,
    more than MAX_IDS, or one is not a job id (so a malformed id never reaches Redis or MySQL)."""
    parts = raw.split(",")
    if not raw or len(parts) > MAX_IDS:
        raise errors.InvalidRequest(f"ids must be 1 to {MAX_IDS} job ids separated by commas")
    return list(dict.fromkeys(parse_job_id(part) for part in parts))


def parse_limit(limit: str | None, *, default: int) -> int:
    """A list's page size: the query's `limit` (1 to MAX_LIMIT), or `default`; else a 400."""
    try:
        page_size = default if limit is None else int(limit)
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= MAX_LIMIT:
        raise errors.InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return page_size


def decode_cursor(cursor: str) -> str:
    """The job id a page starts after. Cursors are job ids: the query is scoped to the owner,
    so a forged cursor can only move within the caller's own jobs."""
    try:
        return parse_job_id(cursor)
    except errors.InvalidJobId:
        raise errors.InvalidRequest("cursor is not one this API returned") from None


def _refused(tenant: Tenant, *, adding: int = 1) -> errors.ActiveJobLimit:
    """The 429 of `adding` jobs (a submission, a batch's, a retry) that would take the client over
    its maxActiveJobs."""
    observability.count("JobsRefused", adding)
    limit = tenant.limits.max_active_jobs
    return errors.ActiveJobLimit(
        f"plan {tenant.plan} allows {limit} unfinished jobs at once (maxActiveJobs); "
        + ("submit again when one has finished" if adding == 1 else f"this batch would add {adding}"),
        maxActiveJobs=limit,
    )


class JobService:
    """Submit, read, cancel and list jobs on behalf of an owner (an API key)."""

    def __init__(
        self,
        store: JobStore,
        hot: HotState,
        queue: JobQueue,
        job_types: JobTypes,
        objects: ObjectStore,
        settings: Settings,
        *,
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
        self._tenants = tenants or Tenants(None)
        self._holds = holds or Holds(store, queue, self._tenants)
        self._dependencies = dependencies or Dependencies(store, hot, queue)
        self._lifecycle = Lifecycle(store, hot, outbox, holds=self._holds, dependencies=self._dependencies)
        #: POST /jobs/cancel (its `limit` is the most jobs one call cancels).
        self.bulk = BulkCancel(store, hot, self._lifecycle)
        self._webhook_policy = guard.Policy.of(
            allow_http=settings.webhook_allow_http, allow_loopback=settings.webhook_allow_loopback
        )
        self._results = Results(objects, settings)

    # --- submit ----------------------------------------------------------------------------------
    @observability.traced
    def submit(self, owner: str, body: Any, *, idempotency_key: str | None = None) -> Answer:
        """Store a new job and queue it: one MySQL insert, one Redis round trip, one SQS send; with
        tenants, one more MySQL statement counts the client's unfinished jobs against its plan, and a
        job over the plan's running cap is held (one UPDATE) instead of sent (holds.py)."""
        tenant = self._tenants.of(owner)
        job_type, payload, options = self.parse_submission(owner, body, tenant)
        # What the client asked, not the moment it made of it: a retry with delaySeconds is the same request.
        asked = [job_type.name, payload, options] + [
            body[k] for k in ("runAt", "delaySeconds", "dependsOn") if k in body
        ]
        request_hash = hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()
        now = utcnow()
        depends_on = self.check_dependencies(owner, parse_depends_on(body.get("dependsOn")))
        job, delay = new_job(owner, body, job_type, payload, options, now, depends_on=depends_on)
        status = job.status
        # Due within SQS's delay: sent now, with it; later ones wait in MySQL for the sweeper (sweeper.py);
        # a waiting one is sent when its dependencies have completed (dependencies.py).
        send_now = delay <= SQS_MAX_DELAY_SECONDS and not depends_on
        stored = self._store.insert_job(
            job, idempotency_key=idempotency_key, request_hash=request_hash, sent=send_now, dependencies=depends_on
        )
        if stored.id != job.id:
            return replace(self.get(owner, stored.id), replayed=True)
        held = False
        if tenant is not None:
            counts = self.within_active_limit([job.id], owner, tenant)
            if status is JobStatus.PENDING and self._holds.should_hold(tenant, counts):  # the others wait anyway
                held = self._holds.hold(job, tenant, counts)
        cadence = job_type.chunk_seconds(payload)
        self._best_effort_write(job, seq=0, cadence_ms=None if cadence is None else cadence * 1000)
        if depends_on:
            # Registered before the check, so the last dependency's end cannot slip between (dependencies.py).
            self._dependencies.register([(job.id, dependency) for dependency in depends_on])
            self._dependencies.settle([job.id], self._lifecycle.cancel_waiter)
        try:
            # A held job's message goes out when the owner's running cap has room (holds.py).
            if send_now and not held:
                # The message carries the row (not a SCHEDULED one's): the worker starts it unread.
                self._queue.send_job(
                    job.id, owner=job.owner, priority=job.priority, delay_seconds=delay, job=carry(job)
                )
        except errors.QueueUnavailable:
            # The row is the outbox: the job stays PENDING, marked unsent, and the sweeper sends it later.
            log.warning("job %s stored but not sent; the sweeper will send it", job.id, exc_info=True)
            self.mark_unsent(job.id)
        observability.count("JobsSubmitted")
        log.info("job submitted", extra={"job_id": job.id, "job_type": job.type})
        if depends_on:  # settled at once, maybe: its dependencies had completed (or one had failed)
            return self.get(owner, job.id)
        return self._answer(job.snapshot(), retry_after(cadence))

    def check_dependencies(self, owner: str, job_ids: list[str]) -> list[str]:
        """The ids, if every one is a job of the owner's (one MySQL statement); else a 400 naming the
        first that is not (another owner's job reads as an unknown one: no oracle across owners)."""
        if not job_ids:
            return job_ids
        found = {job.id for job in self._store.get_jobs(job_ids, owner=owner)}
        for job_id in job_ids:
            if job_id not in found:
                raise errors.InvalidRequest(f"dependsOn: no job {job_id}")
        return job_ids

    def mark_unsent(self, job_id: str) -> None:
        """Clear the row's optimistic `sent`; if MySQL fails too, the sweeper's lost-message rule sends it later."""
        try:
            self._store.mark_unsent(job_id)
        except errors.StoreUnavailable:
            log.warning("job %s: not marked unsent; sent after PENDING_LOST_SECONDS instead", job_id, exc_info=True)

    def within_active_limit(self, job_ids: list[str], owner: str, tenant: Tenant) -> ActiveCounts:
        """Refuse the jobs just inserted (and not yet sent) if they take the client over
        maxActiveJobs; else the client's unfinished jobs, these counted.

        Counted after the insert, so concurrent submissions cannot all slip under the limit: each
        counts the others' rows too, and at most `maxActiveJobs` of them are kept.
        """
        limit = tenant.limits.max_active_jobs
        counts = self._store.count_active(owner)
        if counts.total <= limit:
            return counts
        self._store.delete_unsent(job_ids)
        raise _refused(tenant, adding=len(job_ids))

    def parse_submission(
        self,
        owner: str,
        body: Any,
        tenant: Tenant | None = None,
        *,
        fields: frozenset[str] | None = None,
        context: JobContext | None = None,
    ) -> tuple[JobType, dict[str, Any], dict[str, Any]]:
        """The type, checked payload and options (Job's fields) of a job spec, or the 400 that says
        what is wrong with it. `fields`: the names the spec may have (those of POST /jobs by default);
        `context`: the owner's `submit_context`, made once for many specs."""
        if not isinstance(body, dict):
            raise errors.InvalidJson("the body must be a JSON object")
        unknown = set(body) - (_SUBMIT_FIELDS if fields is None else fields)
        if unknown:
            raise errors.InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        if not isinstance(body.get("type"), str):
            raise errors.InvalidRequest("type is required and must be a string")
        job_type = self._job_types.get(body["type"])
        payload = body.get("payload", {})
        default_timeout, max_timeout = self._settings.default_timeout_seconds, MAX_TIMEOUT_SECONDS
        if tenant is not None:
            plan_max = tenant.limits.max_timeout_seconds
            if isinstance(body.get("timeoutSeconds"), int) and body["timeoutSeconds"] > plan_max:
                raise errors.InvalidRequest(
                    f"timeoutSeconds must be at most {plan_max}, the maxTimeoutSeconds of plan {tenant.plan}"
                )
            default_timeout, max_timeout = min(default_timeout, plan_max), min(max_timeout, plan_max)
        options: dict[str, Any] = {
            "max_attempts": _int_option(body, "maxAttempts", self._settings.default_max_attempts, MAX_ATTEMPTS),
            "timeout_seconds": _int_option(body, "timeoutSeconds", default_timeout, max_timeout),
        }
        if body.get("callbackUrl") is not None:
            options["callback_url"] = self.check_callback_url(body["callbackUrl"])
        priority = parse_priority(body)
        if priority is not Priority.NORMAL:  # a normal job's request hash stays what it was before priorities
            options["priority"] = priority
        context = context or self.submit_context(owner)
        return job_type, self._job_types.check_payload(job_type, payload, context), options

    def check_callback_url(self, url: Any) -> str:
        """A `callbackUrl` this deployment may deliver to, or the 400 that says why not."""
        return guard.check_url(url, self._webhook_policy)

    # --- schedules (schedules.py) ----------------------------------------------------------------
    def check_template(self, owner: str, template: Any) -> None:
        """Validate a schedule's job template exactly as a submission is validated (the same 400s)."""
        self._parse_template(owner, template, self._tenants.of(owner))

    def _parse_template(
        self, owner: str, template: Any, tenant: Tenant | None
    ) -> tuple[JobType, dict[str, Any], dict[str, Any]]:
        if isinstance(template, dict):
            timed = sorted(set(template) & _UNSCHEDULABLE)
            if timed:
                raise errors.InvalidRequest(
                    f"job: {', '.join(timed)} cannot be set: a schedule's job runs at each occurrence"
                )
        return self.parse_submission(owner, template, tenant, fields=_TEMPLATE_FIELDS)

    def create_occurrence(self, owner: str, template: Any, *, run_at: datetime, key: str) -> tuple[Job, bool]:
        """Store the SCHEDULED job of one occurrence of a schedule, unsent: the sweeper's scheduled rule
        sends it with the delay left (sweeper.py), so it starts at `run_at` like any job with a runAt.

        `key` names the occurrence (its Idempotency-Key): (the job, True) when this call made it, (the
        job made earlier under the key, False) otherwise. Raises the template's 400s, and
        ActiveJobLimit (keeping nothing) when the job takes the owner over maxActiveJobs, counted
        after the insert as a submission is."""
        tenant = self._tenants.of(owner)
        job_type, payload, options = self._parse_template(owner, template, tenant)
        now = utcnow()
        job = job_of(owner, job_type, payload, options, now, status=JobStatus.SCHEDULED, run_at=run_at)
        # The hash is of the key, not the template: a template changed between a killed pass and its
        # retry still names the same occurrence, whose job is found rather than refused.
        request_hash = hashlib.sha256(key.encode()).hexdigest()
        stored = self._store.insert_job(job, idempotency_key=key, request_hash=request_hash, sent=False)
        if stored.id != job.id:
            return stored, False
        if tenant is not None:
            self.within_active_limit([job.id], owner, tenant)
        return job, True

    def withdraw(self, owner: str, job_id: str, *, reason: str) -> bool:
        """Cancel the job if it is SCHEDULED and not yet due (a paused, changed or deleted schedule's
        occurrence made ahead of time); True if this call did."""
        job = self._store.get_job(job_id, owner=owner)
        if job is None or job.status is not JobStatus.SCHEDULED or job.run_at is None:
            return False
        if as_utc(job.run_at) <= utcnow():
            return False  # due: its message is out and it starts now, like a job the schedule ran
        return self._lifecycle.end(job, JobStatus.CANCELLED, from_=(JobStatus.SCHEDULED,), message=reason)

    def submit_context(self, owner: str) -> JobContext:
        """The context a type's `validate` sees at submit: the owner, and its inputs' rules (the one
        request: `check_input`'s HeadObject of an input under the owner's prefix)."""
        s = self._settings
        objects = self._objects.scoped(
            owner=owner, job_id=None, input_buckets=s.input_buckets, work_bucket=s.work_bucket
        )
        return JobContext(job_id=None, owner=owner, objects=objects, log=log)

    # --- get -------------------------------------------------------------------------------------
    @observability.traced
    def get(self, owner: str, raw_id: str) -> Answer:
        """The job: from Redis in one round trip when it is there, else from MySQL (which is also
        asked whether a job whose hot snapshot reads stalled has ended). A result in S3 comes as a
        URL signed now (no request: signing is local)."""
        answer = self._get(owner, raw_id)
        key = answer.job.result_key
        return replace(answer, result_url=self._results.url(key)) if key else answer

    @observability.traced
    def result(self, owner: str, raw_id: str) -> JobResult:
        """The result of a COMPLETED job (JobNotCompleted otherwise), read as `get` reads the job."""
        answer = self.get(owner, raw_id)
        job = answer.job
        if job.status is not JobStatus.COMPLETED:
            raise errors.JobNotCompleted(
                f"job {job.id} is {job.status.value}: only a COMPLETED job has a result", status=job.status.value
            )
        return JobResult(url=answer.result_url) if answer.result_url else JobResult(value=job.result)

    def _get(self, owner: str, raw_id: str) -> Answer:
        job_id = parse_job_id(raw_id)
        log.thread_safe_append_keys(job_id=job_id)
        redis_up = True
        try:
            # Wait out a blip rather than answer from MySQL, whose progress is the last hand-off's
            # until the worker notices the outage (issue 16: progress fell to 0 in GET).
            hot = self._hot.ride_out(lambda: self._hot.get(job_id), seconds=READ_RIDE_OUT_SECONDS)
        except errors.HotStateUnavailable:
            log.warning("Redis unavailable, reading job %s from MySQL", job_id, exc_info=True)
            hot, redis_up = None, False
        if hot is not None:
            if hot.owner != owner:
                raise errors.JobNotFound(f"no job {job_id}")
            answer = self._answer_from_hot(job_id, hot)
            job = self._ended_meanwhile(job_id) if self._quiet_check_due(hot) else None
            if job is None:
                return answer
        else:
            job = self._store.get_job(job_id, owner=owner)
            if job is None:
                raise errors.JobNotFound(f"no job {job_id}")
        if job.status.terminal and redis_up:
            # Terminal states never change: put it back in Redis so the next poll is cheap.
            self._lifecycle.publish(job)
        return self._answer(job.snapshot(), self._retry_after_for(job))

    def _quiet_check_due(self, hot: HotJob, *, now: datetime | None = None) -> bool:
        """Whether MySQL should be asked if this active view still holds: a RUNNING view's heartbeat is
        older than QUIET_CADENCES chunks (at least QUIET_MIN_SECONDS, at most STALL_AFTER_SECONDS), a
        PENDING view (a job in a backlog, no heartbeat to miss) older than STALL_AFTER_SECONDS; and
        since the last check at least as long has passed as the view had been quiet then (so a view
        that stays quiet, a job waiting for a retry or a worker, costs a few reads in all, not one
        per poll)."""
        job = hot.job
        if job.status.terminal:
            return False
        now = now or utcnow()
        quiet_after = float(self._settings.stall_after_seconds)
        if job.status is JobStatus.RUNNING:
            cadence = (hot.cadence_ms or 0) / 1000
            quiet_after = min(quiet_after, max(QUIET_MIN_SECONDS, QUIET_CADENCES * cadence))
        updated_ms = _epoch_ms(as_utc(job.updated_at))
        due_ms = updated_ms + quiet_after * 1000
        if hot.checked_ms is not None and hot.checked_ms >= updated_ms:
            due_ms = hot.checked_ms + max(quiet_after * 1000, hot.checked_ms - updated_ms)
        return _epoch_ms(now) >= due_ms

    def _ended_meanwhile(self, job_id: str) -> Job | None:
        """The row of a job whose hot view is quiet, if MySQL says it has ended; else None, and the
        view is marked checked.

        A final write that missed Redis (it was down: lifecycle.py) leaves the last active snapshot
        there; this is where a poll finds out. With MySQL down too, the hot snapshot is the answer.
        """
        try:
            job = self._store.get_job(job_id)
        except errors.StoreUnavailable:
            log.warning("MySQL unavailable, job %s is served from its quiet hot view", job_id, exc_info=True)
            return None
        if job is not None and job.status.terminal:
            return job
        try:
            self._hot.mark_checked(job_id, at_ms=_epoch_ms(utcnow()))
        except errors.HotStateUnavailable:
            pass  # the next poll asks MySQL again
        return None

    def _answer_from_hot(self, job_id: str, hot: HotJob) -> Answer:
        if hot.result_external:
            row = self._store.get_job(job_id)
            hot = replace(hot, job=replace(hot.job, result=row.result if row else None))
        return self._hot_answer(hot)

    def _hot_answer(self, hot: HotJob) -> Answer:
        """The hot view as it is (a result only in MySQL is left out), paced by its chunk cadence."""
        cadence = hot.cadence_ms / 1000 if hot.cadence_ms else None
        return self._answer(hot.job, None if hot.job.status.terminal else retry_after(cadence))

    def _retry_after_for(self, job: Job) -> int | None:
        if job.status.terminal:
            return None
        try:
            return retry_after(self._job_types.get(job.type).chunk_seconds(job.payload))
        except (errors.UnknownJobType, KeyError, TypeError):
            return retry_after(None)

    def _answer(self, job: JobSnapshot, poll_after: int | None = None) -> Answer:
        if job.status is JobStatus.SCHEDULED and job.run_at is not None:  # nothing moves before then
            poll_after = retry_after((job.run_at - utcnow()).total_seconds())
        return Answer(job, poll_after, stalled=self._stalled(job))

    def _stalled(self, job: JobSnapshot) -> bool:
        """Whether the job is RUNNING and its last checkpoint is older than the threshold."""
        quiet = utcnow() - as_utc(job.updated_at)
        return job.status is JobStatus.RUNNING and quiet > timedelta(seconds=self._settings.stall_after_seconds)

    # --- cancel ----------------------------------------------------------------------------------
    @observability.traced
    def cancel(self, owner: str, raw_id: str) -> Answer:
        """Cancel the job: at once if SCHEDULED or PENDING, at its next chunk boundary if RUNNING.

        Returns the job; its status tells which (CANCELLED, or RUNNING with cancel_requested). A
        finished job raises JobFinished; cancelling twice is harmless.
        """
        job_id = parse_job_id(raw_id)
        log.thread_safe_append_keys(job_id=job_id)
        # The row is read, then the guarded UPDATE of its state is tried. The job can move on in
        # between (PENDING -> RUNNING -> finished), so a miss reads again; statuses only move
        # forward, so the third read finds it finished.
        for _ in range(3):
            job = self._store.get_job(job_id, owner=owner)
            if job is None:
                raise errors.JobNotFound(f"no job {job_id}")
            if job.status.unstarted:
                if self._lifecycle.end(
                    job, JobStatus.CANCELLED, from_=(job.status,), message="cancelled before it started"
                ):
                    return self._answer(job.snapshot())
                continue
            if job.status is JobStatus.RUNNING and self._store.request_cancel(job_id, owner=owner, at=utcnow()):
                try:
                    self._hot.request_cancel(job_id)
                except errors.HotStateUnavailable:
                    # MySQL holds the flag; a worker that cannot reach Redis cannot checkpoint
                    # either, and reads the flag from MySQL when its record is retried.
                    log.warning("cancel of %s recorded in MySQL only", job_id, exc_info=True)
                return self.get(owner, job_id)  # the live job, cancel_requested included
            if job.status is JobStatus.CANCELLED:
                return self._answer(job.snapshot())
            if job.status.terminal:
                raise errors.JobFinished(
                    f"job {job_id} is {job.status.value} and cannot be cancelled", status=job.status.value
                )
        raise errors.StoreUnavailable(f"job {job_id} changed state during the cancel; try again")

    @observability.traced
    def cancel_many(self, owner: str, body: Any) -> Cancelled:
        """Cancel the owner's unfinished jobs that match the body's filter, a bounded number per call (bulk.py)."""
        return self.bulk.cancel(owner, parse_filter(body, self._job_types, decode_cursor=decode_cursor))

    # --- retry -----------------------------------------------------------------------------------
    @observability.traced
    def retry(self, owner: str, raw_id: str, body: Any) -> Answer:
        """Run a FAILED or CANCELLED job again under its id, from its durable checkpoint (chunks done
        are not redone) or, with `{"fromStart": true}`, from the start; JobNotRetryable otherwise.

        It is a submission again: counted against maxActiveJobs (429, nothing changed), held over the
        running cap (holds.py), sent, its hot view replaced (`HotState.reset`: the final view is the
        one a write never replaces). Two statements (the read, the guarded UPDATE: of two retries at
        once one wins), two more with tenants (the status claimed first, then the count: see
        `_claim_retry`), one SQS send, two Redis round trips.

        A job that waits for others (`dependsOn`, a batch's `then`) is asked where they are (one
        statement more): while one has not ended it is WAITING again, unsent, registered with them
        and settled as at its submit; once they have all completed it runs; while one FAILED or was
        CANCELLED it is a 409 naming that one (unless it runs on failure).
        """
        job_id = parse_job_id(raw_id)
        from_start = _from_start(body)
        log.thread_safe_append_keys(job_id=job_id)
        job = self._store.get_job(job_id, owner=owner, with_checkpoint=True)
        if job is None:
            raise errors.JobNotFound(f"no job {job_id}")
        if job.status not in RETRYABLE:
            raise _not_retryable(job)
        cadence = self._job_types.get(job.type).chunk_seconds(job.payload)  # a type since removed: 400
        waits = job.depends_on or job.batch_id  # a `then` has no dependsOn: its members are its dependencies
        status = _retried_status(job, self._store.dependency_state(job_id) if waits else None)
        tenant = self._tenants.of(owner)
        counts = None if tenant is None else self._claim_retry(job, tenant, status)
        now = utcnow()
        message = "retried from the start" if from_start else "retried: resumes from its last checkpoint"
        retried = self._store.retry(
            job_id,
            owner=owner,
            from_start=from_start,
            at=now,
            message=message,
            status=status,
            claimed=counts is not None,
        )
        if not retried:
            raise _not_retryable(self._store.get_job(job_id, owner=owner) or job)  # another retry won
        _as_retried(job, status=status, from_start=from_start, at=now, message=message)
        held = False
        if status is JobStatus.PENDING and tenant is not None and counts is not None:
            held = self._holds.should_hold(tenant, counts) and self._holds.hold(job, tenant, counts)
        try:
            self._hot.ride_out(lambda: self._hot.reset(job_id), seconds=RIDE_OUT_SECONDS)
        except errors.HotStateUnavailable:
            # The worker that starts it replaces the stale final view (worker._hold); until then GET may show it.
            log.warning("job %s retried, its old view is still in Redis", job_id, exc_info=True)
        else:
            self._best_effort_write(job, seq=0, cadence_ms=None if cadence is None else cadence * 1000)
        if status is JobStatus.WAITING:
            # Registered before the settle, as at submit: a dependency's end cannot slip between.
            self._dependencies.register([(job.id, dependency) for dependency in self._store.dependencies_of(job.id)])
            self._dependencies.settle([job.id], self._lifecycle.cancel_waiter)
        elif not held:
            # A job with a durable checkpoint is sent without its row: the worker reads it, checkpoint
            # included, and resumes as after a hand-off (a carried start is guarded by `checkpoint IS NULL`).
            carried = carry(job) if job.checkpoint is None else None
            try:
                self._queue.send_job(job.id, owner=owner, priority=job.priority, job=carried)
            except errors.QueueUnavailable:
                log.warning("job %s retried but not sent; the sweeper will send it", job.id, exc_info=True)
                self.mark_unsent(job.id)
        observability.count("JobsRetried")
        log.info("job retried", extra={"job_id": job.id, "from_start": from_start})
        if status is JobStatus.WAITING:  # settled at once, maybe: its last dependency ended meanwhile
            return self.get(owner, job.id)
        return self._answer(job.snapshot(), retry_after(cadence))

    def _claim_retry(self, job: Job, tenant: Tenant, status: JobStatus) -> ActiveCounts:
        """Count a retry against maxActiveJobs as a submission is, after it took its place: the row
        is `status` first (that and `held` alone), then the owner's unfinished jobs are counted, this one with
        them, so concurrent retries cannot all slip under the limit; over it, the status is put back
        and the retry is a 429 with nothing changed. The counts, with this job, when it is in."""
        if not self._store.claim_retry(job.id, owner=job.owner, status=status):
            raise _not_retryable(self._store.get_job(job.id, owner=job.owner) or job)  # another retry won
        counts = self._store.count_active(job.owner)
        if counts.total > tenant.limits.max_active_jobs:
            self._store.unclaim_retry(job, claimed=status)
            raise _refused(tenant)
        return counts

    # --- webhooks --------------------------------------------------------------------------------
    @observability.traced
    def deliveries(self, owner: str, raw_id: str) -> list[dict[str, Any]]:
        """The webhook delivery attempts of the owner's job, oldest first (one MySQL statement)."""
        job_id = parse_job_id(raw_id)
        found = self._store.deliveries(job_id, owner=owner)
        if found is None:
            raise errors.JobNotFound(f"no job {job_id}")
        return found

    # --- list ------------------------------------------------------------------------------------
    @observability.traced
    def list(
        self,
        owner: str,
        *,
        status: str | None = None,
        type: str | None = None,
        limit: str | None = None,
        cursor: str | None = None,
        ids: str | None = None,
    ) -> Page:
        """The owner's jobs, newest first, a page at a time; active ones show live progress.

        With `ids`, the same list restricted to those jobs (others' and unknown ids are simply not
        in it), read as a poll reads them: one Redis round trip for all, one MySQL query for those
        Redis lacks; `limit` then defaults to the number of ids.
        """
        try:
            wanted_status = None if status is None else JobStatus(status)
        except ValueError:
            raise errors.InvalidRequest(f"status must be one of {', '.join(s.value for s in JobStatus)}") from None
        if type is not None:
            self._job_types.get(type)
        job_ids = None if ids is None else parse_job_ids(ids)
        page_size = parse_limit(limit, default=len(job_ids) if job_ids else DEFAULT_LIMIT)
        before_id = None if cursor is None else decode_cursor(cursor)
        if job_ids is not None:
            return self._page_of_ids(owner, job_ids, wanted_status, type, page_size, before_id)
        rows = self._store.list_jobs(owner, status=wanted_status, type=type, limit=page_size + 1, before_id=before_id)
        page, more = rows[:page_size], len(rows) > page_size
        live = self._live([job.id for job in page if not job.status.terminal])
        answers = [self._answer(live.get(job.id) or job.snapshot()) for job in page]
        return Page(answers, page[-1].id if more else None)

    def _page_of_ids(
        self,
        owner: str,
        job_ids: Sequence[str],
        status: JobStatus | None,
        type: str | None,
        page_size: int,
        before_id: str | None,
    ) -> Page:
        """The list's page over these jobs: the same filters and order; Retry-After the smallest."""
        answers = sorted(
            (
                answer
                for answer in self._by_ids(owner, job_ids)
                if (status is None or answer.job.status is status)
                and (type is None or answer.job.type == type)
                and (before_id is None or answer.job.id < before_id)
            ),
            key=lambda answer: answer.job.id,
            reverse=True,
        )
        page, more = answers[:page_size], len(answers) > page_size
        pace = [answer.retry_after for answer in page if answer.retry_after is not None]
        return Page(page, page[-1].job.id if more else None, min(pace, default=None))

    def _by_ids(self, owner: str, job_ids: Sequence[str]) -> Sequence[Answer]:
        """The owner's jobs among these ids: hot views in one round trip, the rest in one MySQL query.

        Like `get`, a Redis blip is waited out, then MySQL answers for all; a quiet hot view whose
        check is due (`_quiet_check_due`) is checked against its row in the same query, and those
        still active are marked checked in one more round trip; unlike `get`, nothing is put back in
        Redis (the list serves no result, and an active job's next write puts its view back).
        """
        try:
            hot = self._hot.ride_out(lambda: self._hot.get_many(list(job_ids)), seconds=READ_RIDE_OUT_SECONDS)
        except errors.HotStateUnavailable:
            log.warning("Redis unavailable, reading %d jobs from MySQL", len(job_ids), exc_info=True)
            hot = {}
        mine = {job_id: found for job_id, found in hot.items() if found.owner == owner}  # others': absent
        answers = {job_id: self._hot_answer(found) for job_id, found in mine.items()}
        quiet = [job_id for job_id, found in mine.items() if self._quiet_check_due(found)]
        misses = [job_id for job_id in job_ids if job_id not in hot]
        if not (misses or quiet):
            return list(answers.values())
        try:
            rows = self._store.get_jobs([*misses, *quiet], owner=owner)
        except errors.StoreUnavailable:
            if misses:
                raise
            log.warning("MySQL unavailable, quiet jobs are served from their hot views", exc_info=True)
            return list(answers.values())
        ended = {job.id for job in rows if job.status.terminal}
        for job in rows:
            if job.id not in answers or job.id in ended:
                answers[job.id] = self._answer(job.snapshot(), self._retry_after_for(job))
        try:
            self._hot.mark_checked_many([job_id for job_id in quiet if job_id not in ended], at_ms=_epoch_ms(utcnow()))
        except errors.HotStateUnavailable:
            pass  # the next poll asks MySQL again
        return list(answers.values())

    def _live(self, job_ids: Sequence[str]) -> dict[str, JobSnapshot]:
        """The hot snapshots of these active jobs (one round trip); none when Redis is down."""
        try:
            found = self._hot.get_many(list(job_ids))
        except errors.HotStateUnavailable:
            return {}
        return {job_id: hot.job for job_id, hot in found.items()}

    # --- limits ----------------------------------------------------------------------------------
    @observability.traced
    def usage(self, owner: str) -> Usage:
        """The caller's plan and limits, and its unfinished jobs by status (one MySQL statement)."""
        return Usage(client=owner, tenant=self._tenants.of(owner), active=self._store.count_active(owner))

    # --- health ----------------------------------------------------------------------------------
    @observability.traced
    def health(self) -> dict[str, str]:
        """One cheap call to each dependency: "ok" or "unavailable" for mysql, redis and sqs."""
        checks = {}
        for name, ping in (("mysql", self._store.ping), ("redis", self._hot.ping), ("sqs", self._queue.ping)):
            try:
                ping()
                checks[name] = "ok"
            except errors.DependencyUnavailable as exc:
                log.warning("health check: %s unavailable: %s", name, exc.message)
                checks[name] = "unavailable"
        return checks

    # --- helpers ---------------------------------------------------------------------------------
    def _best_effort_write(self, job: Job, *, seq: int, cadence_ms: float | None = None) -> None:
        """Write the job's snapshot to Redis; if Redis is down, readers fall back to MySQL."""
        try:
            self._hot.write(job.snapshot(), seq=seq, cadence_ms=cadence_ms)
        except errors.HotStateUnavailable:
            log.warning("Redis unavailable, job %s is served from MySQL", job.id, exc_info=True)
