"""Recurring schedules: the use cases behind /schedules, and the sweeper's rule that fires them.

A schedule is a 5-field cron expression in an IANA zone (cron.py) and a job template, validated as
POST /jobs validates a submission (JobService.check_template). Its rows are schedule_store.py's.

**Exactly one job per occurrence.** Each pass of the sweeper makes, for every schedule due within
LOOKAHEAD_SECONDS, the job of its next occurrence ahead of time: a SCHEDULED job with `runAt` = the
occurrence, unsent, which the same pass's scheduled rule sends with SQS's delay, so it starts
within about a second of the occurrence. The job's Idempotency-Key names the occurrence
(`schedule:<id>:<generation>:<epoch seconds>`, unique per owner in MySQL), so two sweepers at once,
a pass killed between the insert and the advance, or a retried pass find that job instead of
making a second; then `next_run_at` moves on with an UPDATE guarded by the value read.

**Missed occurrences.** After an outage of the sweeper, or on resume after a pause, only the latest
occurrence missed runs, once (late, at once); the earlier missed ones are not made up.

**Overlap.** With `"skip"` (the default: a recurring job slower than its interval would otherwise
pile up to maxActiveJobs), an occurrence whose previous job is still active is skipped and
recorded (`skipped`, `lastSkippedAt`, `lastSkipReason`). It is judged when the occurrence's job
would be made, up to LOOKAHEAD_SECONDS before the occurrence; a previous job not yet due (a
minutely schedule's) is waited for until the next pass. An occurrence whose job would take the
owner over maxActiveJobs, or whose template no longer validates, is skipped and recorded the same way.

**Pause, change, delete.** A pause, a change of cron or zone, or a delete withdraws (cancels) the
occurrence's job made ahead of time if it is not yet due.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from . import errors, observability
from .cron import Cron, zone
from .models import JobStatus, as_utc, new_job_id, parse_job_id, utcnow
from .observability import logger as log
from .schedule_store import DEFAULT_TIMEZONE, Overlap, Schedule, ScheduleStore
from .service import DEFAULT_LIMIT, JobService, decode_cursor, parse_limit
from .store import JobStore
from .tenants import Tenants

#: How far ahead of an occurrence its job is made: more than the sweeper's period (a minute), so
#: some pass comes before each occurrence even when passes run a little late.
LOOKAHEAD_SECONDS = 90
_CREATE_FIELDS = {"cron", "timezone", "job", "overlap", "paused"}
_PATCH_FIELDS = _CREATE_FIELDS
#: What an unstarted occurrence's job reads when a pause, a change or a delete withdraws it.
WITHDRAWN = "withdrawn: its schedule was paused, changed or deleted before it was due"


@dataclass(frozen=True)
class SchedulePage:
    """One page of a caller's schedules, newest first."""

    schedules: list[Schedule]
    next_cursor: str | None


@dataclass
class FireReport:
    """What one pass of the schedules rule did."""

    #: Occurrence jobs made (or found made by an earlier, interrupted pass).
    fired: int = 0
    #: Occurrences skipped and recorded (overlap, maxActiveJobs, a template no longer valid).
    skipped: int = 0


def occurrence_key(schedule: Schedule, at: datetime) -> str:
    """The Idempotency-Key of the job of the schedule's occurrence at `at` (http.RESERVED_KEY_PREFIX:
    a client's key never starts so)."""
    return f"schedule:{schedule.id}:{schedule.generation}:{int(at.timestamp())}"


def _cron_of(schedule: Schedule) -> Cron:
    """The stored (already checked) expression and zone."""
    return Cron(schedule.cron, zone(schedule.timezone))


def _parse_id(raw: str) -> str:
    """A schedule id in canonical form; one that cannot be an id is unknown, like a missing one."""
    try:
        return parse_job_id(raw)  # schedule ids are ULIDs, like job ids
    except errors.InvalidJobId:
        raise errors.ScheduleNotFound(f"no schedule {raw[:40]!r}") from None


def _overlap(body: dict[str, Any], default: Overlap) -> Overlap:
    if "overlap" not in body:
        return default
    try:
        return Overlap(body["overlap"])
    except ValueError:
        raise errors.InvalidRequest('overlap must be "skip" or "allow"') from None


def _paused(body: dict[str, Any], default: bool) -> bool:
    value = body.get("paused", default)
    if not isinstance(value, bool):
        raise errors.InvalidRequest("paused must be true or false")
    return value


def _fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.InvalidJson("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise errors.InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    return body


class ScheduleService:
    """Create, read, change, delete and fire the schedules of owners (API keys or clients)."""

    def __init__(
        self,
        store: ScheduleStore,
        jobs: JobService,
        job_store: JobStore,
        tenants: Tenants,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._store = store
        self._jobs = jobs
        self._job_store = job_store
        self._tenants = tenants
        #: Now, for the first occurrence of a new or changed schedule (tests pass their own).
        self._clock = clock

    # --- the routes ------------------------------------------------------------------------------
    @observability.traced
    def create(self, owner: str, body: Any) -> Schedule:
        """Store a new schedule (first occurrence after now); over the plan's maxSchedules, ScheduleLimit.

        Counted after the insert, as submissions are against maxActiveJobs: concurrent creates each
        count the others' rows, and at most maxSchedules of them are kept."""
        body = _fields(body, _CREATE_FIELDS)
        now = self._clock()
        cron = Cron.parse(body.get("cron"), body.get("timezone", DEFAULT_TIMEZONE), now=now)
        if "job" not in body:
            raise errors.InvalidRequest("job is required: the template of each occurrence's job")
        template = copy.deepcopy(body["job"])  # as the client gave it: a type's validate may fill defaults in
        self._jobs.check_template(owner, body["job"])
        paused = _paused(body, False)
        schedule = Schedule(
            id=new_job_id(),
            owner=owner,
            cron=cron.expression,
            timezone=cron.timezone,
            job=template,
            overlap=_overlap(body, Overlap.SKIP),
            paused=paused,
            next_run_at=None if paused else cron.next_after(now),
            paused_at=now if paused else None,
            created_at=now,
            updated_at=now,
        )
        self._store.insert(schedule)
        tenant = self._tenants.of(owner)
        if tenant is not None and self._store.count(owner) > tenant.limits.max_schedules:
            self._store.delete(schedule.id, owner=owner)
            limit = tenant.limits.max_schedules
            raise errors.ScheduleLimit(
                f"plan {tenant.plan} allows {limit} schedules (maxSchedules); delete one to make another",
                maxSchedules=limit,
            )
        log.info("schedule created", extra={"schedule_id": schedule.id, "cron": schedule.cron})
        return schedule

    @observability.traced
    def get(self, owner: str, raw_id: str) -> Schedule:
        """The owner's schedule; ScheduleNotFound for an unknown id and for another owner's alike."""
        schedule_id = _parse_id(raw_id)
        schedule = self._store.get(schedule_id, owner=owner)
        if schedule is None:
            raise errors.ScheduleNotFound(f"no schedule {schedule_id}")
        return schedule

    @observability.traced
    def list(self, owner: str, *, limit: str | None = None, cursor: str | None = None) -> SchedulePage:
        """The owner's schedules, newest first, a page at a time (the cursor is the last id given)."""
        page_size = parse_limit(limit, default=DEFAULT_LIMIT)
        before_id = None if cursor is None else decode_cursor(cursor)  # schedule ids are ULIDs too
        rows = self._store.list_schedules(owner, limit=page_size + 1, before_id=before_id)
        page = rows[:page_size]
        return SchedulePage(page, page[-1].id if len(rows) > page_size else None)

    @observability.traced
    def update(self, owner: str, raw_id: str, body: Any) -> Schedule:
        """Change `paused`, `cron`, `timezone`, `job` or `overlap`; the next occurrence follows:
        none while paused, on resume the first after the pause began (so the latest one missed
        runs once), after a change of cron or zone the first after now."""
        body = _fields(body, _PATCH_FIELDS)
        # Read, then a write guarded by what was read; a sweeper's advance in between reads again.
        for _ in range(3):
            schedule = self.get(owner, raw_id)
            now = self._clock()
            columns = self._changes(schedule, body, now)
            if not columns:
                return schedule
            if self._store.update(schedule.id, owner=owner, read_at=schedule.updated_at, at=now, **columns):
                changed = replace(schedule, **columns, updated_at=now)
                if "generation" in columns and schedule.last_job_id:
                    self._jobs.withdraw(owner, schedule.last_job_id, reason=WITHDRAWN)
                return changed
        raise errors.StoreUnavailable(f"schedule {schedule.id} changed during the update; try again")

    def _changes(self, schedule: Schedule, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The columns a PATCH sets (none when it changes nothing)."""
        columns: dict[str, Any] = {}
        cron = Cron.parse(body.get("cron", schedule.cron), body.get("timezone", schedule.timezone), now=now)
        retimed = (cron.expression, cron.timezone) != (schedule.cron, schedule.timezone)
        if retimed:
            columns.update(cron=cron.expression, timezone=cron.timezone)
        if "job" in body and body["job"] != schedule.job:
            columns["job"] = copy.deepcopy(body["job"])
            self._jobs.check_template(owner=schedule.owner, template=body["job"])
        overlap = _overlap(body, schedule.overlap)
        if overlap is not schedule.overlap:
            columns["overlap"] = overlap
        paused = _paused(body, schedule.paused)
        if paused and not schedule.paused:
            columns.update(paused=True, paused_at=now, next_run_at=None)
        elif schedule.paused and not paused:
            columns.update(paused=False, paused_at=None, next_run_at=cron.next_after(schedule.paused_at or now))
        elif retimed and not paused:
            columns["next_run_at"] = cron.next_after(now)
        if retimed or paused != schedule.paused:
            columns["generation"] = schedule.generation + 1
        return columns

    @observability.traced
    def delete(self, owner: str, raw_id: str) -> None:
        """Delete the owner's schedule, withdrawing its occurrence's job made ahead if not yet due."""
        schedule = self.get(owner, raw_id)
        if not self._store.delete(schedule.id, owner=owner):
            raise errors.ScheduleNotFound(f"no schedule {schedule.id}")
        if schedule.last_job_id:
            self._jobs.withdraw(owner, schedule.last_job_id, reason=WITHDRAWN)

    # --- the sweeper's rule ----------------------------------------------------------------------
    def fire_due(self, now: datetime, *, limit: int, stop: Callable[[], bool] = lambda: False) -> FireReport:
        """Make the job of the next occurrence of each schedule due within LOOKAHEAD_SECONDS (at most
        `limit` schedules, until `stop()`), or record why it is skipped, and move each one on.

        One indexed range of schedules, one statement for the previous jobs' states, then per
        schedule an insert (plus the plan's count, with tenants) and the guarded advance."""
        report = FireReport()
        due = self._store.due(before=now + timedelta(seconds=LOOKAHEAD_SECONDS), limit=limit)
        previous = self._job_store.statuses(
            [s.last_job_id for s in due if s.overlap is Overlap.SKIP and s.last_job_id is not None]
        )
        for schedule in due:
            if stop():
                break
            try:
                outcome = self._fire(schedule, now, previous.get(schedule.last_job_id or ""))
            except errors.DependencyUnavailable:  # it stays due: the next pass fires it
                log.warning("schedule %s not fired: dependency down", schedule.id, exc_info=True)
                continue
            except errors.InvalidRequest:  # its zone left this runtime's zone data (a tzdata downgrade)
                log.error("schedule %s not fired: its cron or zone cannot be read", schedule.id, exc_info=True)
                continue
            report.fired += outcome == "fired"
            report.skipped += outcome == "skipped"
        if report.fired or report.skipped:
            log.info("schedules fired", extra={"fired": report.fired, "skipped": report.skipped})
        return report

    def _fire(self, schedule: Schedule, now: datetime, previous: tuple[JobStatus, Any] | None) -> str:
        """Fire one due schedule: "fired", "skipped", "waiting" (its previous job is not yet due) or
        "lost" (another sweeper, or a change, moved it on first)."""
        assert schedule.next_run_at is not None  # due() finds only unpaused schedules
        cron = _cron_of(schedule)
        at = schedule.next_run_at
        if at <= now:  # late: after an outage or a resume only the latest missed occurrence runs
            at = cron.latest_until(now, not_before=at)
        following = cron.next_after(at)
        skip = self._overlapping(schedule, previous, now, at)
        if skip == "":
            return "waiting"
        if skip is None:
            try:
                job, _ = self._jobs.create_occurrence(
                    schedule.owner, schedule.job, run_at=at, key=occurrence_key(schedule, at)
                )
            except errors.ClientError as exc:  # over maxActiveJobs, or a template no longer valid
                skip = f"{exc.code}: {exc.message}"
            else:
                won = self._store.advance(
                    schedule.id, from_next=schedule.next_run_at, next_run_at=following, at=now, ran=(at, job.id)
                )
                return "fired" if won else "lost"
        log.info("schedule %s skipped its occurrence at %s: %s", schedule.id, at.isoformat(), skip)
        won = self._store.advance(
            schedule.id, from_next=schedule.next_run_at, next_run_at=following, at=now, skip_reason=skip
        )
        return "skipped" if won else "lost"

    @staticmethod
    def _overlapping(
        schedule: Schedule, previous: tuple[JobStatus, Any] | None, now: datetime, at: datetime
    ) -> str | None:
        """Why the occurrence at `at` is skipped for overlap (None: it is not; "": decide at the next
        pass, the previous job is not yet due and the occurrence still ahead)."""
        if schedule.overlap is not Overlap.SKIP or previous is None:
            return None
        status, run_at = previous
        if status.terminal:
            return None
        if status is JobStatus.SCHEDULED and run_at is not None and as_utc(run_at) > now and at > now:
            return ""
        return f"overlap: the previous job {schedule.last_job_id} is still {status.value}"
