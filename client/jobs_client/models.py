"""What the API answers, as typed values: a job, a page of jobs, an upload, a client's limits, a schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    """Where a job is in its lifecycle; COMPLETED, FAILED and CANCELLED never change again."""

    #: Stored and queued (or waiting for a worker slot).
    PENDING = "PENDING"
    #: Waiting for its `runAt` (submit with `run_at` or `delay_seconds`).
    SCHEDULED = "SCHEDULED"
    #: Waiting for the jobs it depends on (`depends_on`, a batch's `then`).
    WAITING = "WAITING"
    #: A worker runs it; progress moves after every chunk.
    RUNNING = "RUNNING"
    #: Finished with a result.
    COMPLETED = "COMPLETED"
    #: Ended with an error.
    FAILED = "FAILED"
    #: Cancelled before or while it ran.
    CANCELLED = "CANCELLED"

    @classmethod
    def _missing_(cls, value: object) -> JobStatus | None:
        # A status a newer server sends is kept as it is (an active one) rather than refused.
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (its state never changes again)."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class ProgressDetail:
    """Progress in the job type's own units (rows, bytes, steps)."""

    done: int
    total: int | None
    stage: str | None


@dataclass(frozen=True)
class Job:
    """A job as the API showed it; list items (`list`, `get_many`) carry no `result`."""

    id: str
    type: str
    status: JobStatus
    progress: int
    message: str | None = None
    progress_detail: ProgressDetail | None = None
    eta_seconds: int | None = None
    error: str | None = None
    #: The error of the run before a retry (`Client.retry_job`).
    previous_error: str | None = None
    attempts: int = 0
    max_attempts: int | None = None
    cancel_requested: bool = False
    stalled: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: When a scheduled job starts (None: at once).
    run_at: datetime | None = None
    #: "normal", or "high": the job has its own queue and workers.
    priority: str = "normal"
    #: The batch it is a member (or the then) of, and the jobs it waits for.
    batch_id: str | None = None
    depends_on: list[str] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The result when inline (None for list items, unfinished jobs, and results kept in S3).
    result: Any = None
    #: A presigned GET of a result kept in S3 (valid minutes); `Client.result` fetches either kind.
    result_url: str | None = None
    result_bytes: int | None = None
    #: Seconds the API advises before polling again (its Retry-After), where it gave one.
    retry_after: float | None = None
    #: The JSON as the API sent it, fields this version does not know included.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """Whether the job has ended."""
        return self.status.terminal

    @classmethod
    def from_json(cls, data: dict[str, Any], *, retry_after: float | None = None) -> Job:
        detail = data.get("progressDetail")
        return cls(
            id=data["jobId"],
            type=data["type"],
            status=JobStatus(data["status"]),
            progress=data.get("progress", 0),
            message=data.get("message"),
            progress_detail=None
            if detail is None
            else ProgressDetail(detail["done"], detail["total"], detail["stage"]),
            eta_seconds=data.get("etaSeconds"),
            error=data.get("error"),
            previous_error=data.get("previousError"),
            attempts=data.get("attempts", 0),
            max_attempts=data.get("maxAttempts"),
            cancel_requested=bool(data.get("cancelRequested")),
            stalled=bool(data.get("stalled")),
            created_at=_moment(data.get("createdAt")),
            updated_at=_moment(data.get("updatedAt")),
            run_at=_moment(data.get("runAt")),
            priority=data.get("priority") or "normal",
            batch_id=data.get("batchId"),
            depends_on=data.get("dependsOn"),
            started_at=_moment(data.get("startedAt")),
            finished_at=_moment(data.get("finishedAt")),
            result=data.get("result"),
            result_url=data.get("resultUrl"),
            result_bytes=data.get("resultBytes"),
            retry_after=retry_after,
            raw=data,
        )


@dataclass(frozen=True)
class Batch:
    """A batch as `GET /batches/{id}` showed it: its status, its members' counts by status and mean
    progress, its then job, and a page of its members' ids (`next_cursor` for the next)."""

    id: str
    status: JobStatus
    counts: dict[str, int]
    progress: int
    job_ids: list[str]
    then_job_id: str | None = None
    then_status: JobStatus | None = None
    next_cursor: str | None = None
    cancelled: bool = False
    retry_after: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        """Whether every job of the batch has ended."""
        return self.status.terminal

    @classmethod
    def from_json(cls, data: dict[str, Any], *, retry_after: float | None = None) -> Batch:
        then = data.get("then")
        return cls(
            id=data["batchId"],
            status=JobStatus(data["status"]),
            counts=dict(data.get("counts") or {}),
            progress=data.get("progress", 0),
            job_ids=list(data.get("jobIds") or []),
            then_job_id=data.get("thenJobId"),
            then_status=None if not then else JobStatus(then["status"]),
            next_cursor=data.get("nextCursor"),
            cancelled=bool(data.get("cancelled")),
            retry_after=retry_after,
            raw=data,
        )


@dataclass(frozen=True)
class Submitted:
    """What `POST /batches` answered: the batch's id, its jobs' ids in the order given, its then's."""

    batch_id: str
    job_ids: list[str]
    then_job_id: str | None


@dataclass(frozen=True)
class Page:
    """One page of `GET /jobs`: its jobs, newest first, and the cursor of the next (None: the last)."""

    jobs: list[Job]
    next_cursor: str | None
    #: With ids: the smallest Retry-After of the page's active jobs.
    retry_after: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], *, retry_after: float | None = None) -> Page:
        return cls([Job.from_json(item) for item in data["jobs"]], data.get("nextCursor"), retry_after)


@dataclass(frozen=True)
class Upload:
    """Where an uploaded file is: put `bucket` and `key` in a job's payload."""

    bucket: str
    key: str
    expires_at: datetime | None
    max_bytes: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upload:
        return cls(data["bucket"], data["key"], _moment(data.get("expiresAt")), data.get("maxBytes"), data)


@dataclass(frozen=True)
class Limits:
    """`GET /limits`: who the key belongs to, its plan's job limits (None without tenants) and its use."""

    client: str
    plan: str | None
    max_active_jobs: int | None
    max_running_jobs: int | None
    max_timeout_seconds: int | None
    active_jobs: int
    pending_jobs: int
    running_jobs: int
    #: PENDING jobs held back until the plan's running cap has room (no message sent yet).
    held_jobs: int = 0
    #: Jobs waiting for their runAt.
    scheduled_jobs: int = 0
    #: Jobs waiting for the jobs they depend on (dependsOn, a batch's then).
    waiting_jobs: int = 0
    #: Recurring schedules the plan allows (None without tenants).
    max_schedules: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        limits, usage = data.get("limits") or {}, data["usage"]
        return cls(
            client=data["client"],
            plan=data.get("plan"),
            max_active_jobs=limits.get("maxActiveJobs"),
            max_running_jobs=limits.get("maxRunningJobs"),
            max_timeout_seconds=limits.get("maxTimeoutSeconds"),
            active_jobs=usage["activeJobs"],
            pending_jobs=usage.get("pendingJobs", 0),
            running_jobs=usage.get("runningJobs", 0),
            held_jobs=usage.get("heldJobs", 0),
            scheduled_jobs=usage.get("scheduledJobs", 0),
            waiting_jobs=usage.get("waitingJobs", 0),
            max_schedules=limits.get("maxSchedules"),
            raw=data,
        )


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a job's completion webhook (`GET /jobs/{id}/deliveries`)."""

    attempt: int
    at: datetime | None
    #: The receiver's HTTP status; None when there was none (a timeout, a refused address).
    status_code: int | None
    error: str | None
    #: When the next attempt is due; None when none follows (delivered, or given up).
    next_retry_at: datetime | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            attempt=data["attempt"],
            at=_moment(data.get("at")),
            status_code=data.get("statusCode"),
            error=data.get("error"),
            next_retry_at=_moment(data.get("nextRetryAt")),
        )


@dataclass(frozen=True)
class Schedule:
    """A recurring schedule (`/schedules`): a job made for each occurrence of `cron` in `timezone`."""

    id: str
    cron: str
    timezone: str
    #: The job template (type, payload, ...) as given.
    job: dict[str, Any]
    #: "skip" (an occurrence while the previous job is active is skipped) or "allow".
    overlap: str
    paused: bool
    #: The next occurrence; None while paused.
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: str | None
    skipped: int = 0
    last_skipped_at: datetime | None = None
    last_skip_reason: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        return cls(
            id=data["scheduleId"],
            cron=data["cron"],
            timezone=data["timezone"],
            job=data["job"],
            overlap=data["overlap"],
            paused=data["paused"],
            next_run_at=_moment(data.get("nextRunAt")),
            last_run_at=_moment(data.get("lastRunAt")),
            last_job_id=data.get("lastJobId"),
            skipped=data.get("skipped", 0),
            last_skipped_at=_moment(data.get("lastSkippedAt")),
            last_skip_reason=data.get("lastSkipReason"),
            created_at=_moment(data.get("createdAt")),
            raw=data,
        )
