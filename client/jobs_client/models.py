"""What the API answers, as typed values: a job, a page of jobs, an upload, a client's limits."""

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
    #: Waiting for the jobs it depends on (routes to come).
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
    attempts: int = 0
    max_attempts: int | None = None
    cancel_requested: bool = False
    stalled: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: When a scheduled job starts (None: at once).
    run_at: datetime | None = None
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
            attempts=data.get("attempts", 0),
            max_attempts=data.get("maxAttempts"),
            cancel_requested=bool(data.get("cancelRequested")),
            stalled=bool(data.get("stalled")),
            created_at=_moment(data.get("createdAt")),
            updated_at=_moment(data.get("updatedAt")),
            run_at=_moment(data.get("runAt")),
            started_at=_moment(data.get("startedAt")),
            finished_at=_moment(data.get("finishedAt")),
            result=data.get("result"),
            result_url=data.get("resultUrl"),
            result_bytes=data.get("resultBytes"),
            retry_after=retry_after,
            raw=data,
        )


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
            raw=data,
        )
