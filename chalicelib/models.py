"""The job as the platform sees it: status, the MySQL row, and the public view clients read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from . import errors


class JobStatus(str, Enum):
    """Where a job is in its lifecycle. Terminal states never change again."""

    #: Stored in MySQL with a `runAt` ahead: its message goes out (with SQS's delay) for then.
    SCHEDULED = "SCHEDULED"
    #: Stored in MySQL, no message: it waits for the jobs it depends on (`dependsOn`, a batch's
    #: members for its `then`) to end; the last one's end makes it PENDING, or CANCELLED (dependencies.py).
    WAITING = "WAITING"
    #: Stored in MySQL; its id is on the queue, or the sweeper will put it there.
    PENDING = "PENDING"
    #: A worker has started it; progress is checkpointed after every chunk.
    RUNNING = "RUNNING"
    #: Finished with a result.
    COMPLETED = "COMPLETED"
    #: Ended with an error (after its last attempt, a timeout, or a poison message).
    FAILED = "FAILED"
    #: Cancelled: at once while SCHEDULED, WAITING or PENDING, at the next chunk boundary while RUNNING.
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def unstarted(self) -> bool:
        """Not started yet: a worker's start moves it to RUNNING (SCHEDULED once due; WAITING never:
        it becomes PENDING first)."""
        return self in (JobStatus.SCHEDULED, JobStatus.WAITING, JobStatus.PENDING)


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Priority(str, Enum):
    """Which queue a job's messages go to: high jobs have their own queue and workers, so a backlog
    of normal ones never delays them."""

    #: The jobs queue, shared by every normal job.
    NORMAL = "normal"
    #: The high-priority queue (JOBS_HIGH_QUEUE_URL), with its own dead-letter queue and concurrency.
    HIGH = "high"


class CallbackState(str, Enum):
    """Where a job's completion webhook is (the row's `callback_state`; NULL: the job has none)."""

    #: The job has not ended, or its end is not yet on the webhooks queue (the sweeper sends it).
    WAITING = "WAITING"
    #: On the webhooks queue: an attempt is due at `callback_due_at`.
    QUEUED = "QUEUED"
    #: The receiver answered 2xx.
    DELIVERED = "DELIVERED"
    #: Given up: a 4xx, a refused address, or no 2xx within the retry window.
    FAILED = "FAILED"

    @property
    def open(self) -> bool:
        return self in (CallbackState.WAITING, CallbackState.QUEUED)


#: A ULID: 48 bits of milliseconds and 80 random bits in Crockford base32, so ids sort by creation
#: time and cannot be guessed. The first character is at most 7 (128 bits in 26 characters).
JOB_ID_PATTERN = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"
_JOB_ID = re.compile(JOB_ID_PATTERN)
#: Longest progress message kept (the `message` column is VARCHAR(1024)).
MAX_MESSAGE_CHARS = 1024


def result_key(owner: str, job_id: str) -> str:
    """Where a result too large to be inline is kept in RESULTS_BUCKET."""
    return f"results/{owner}/{job_id}.json"


def new_job_id() -> str:
    """A fresh, unguessable, time-ordered job id."""
    from ulid import ULID  # 35 ms of imports: only the routes that create jobs pay for them

    return str(ULID())


def parse_job_id(raw: str) -> str:
    """The canonical form of a job id from a client, or InvalidJobId."""
    job_id = (raw or "").upper()
    if not _JOB_ID.fullmatch(job_id):
        raise errors.InvalidJobId(f"{raw[:40]!r} is not a job id")
    return job_id


def utcnow() -> datetime:
    """Now, in UTC, to the millisecond (what MySQL's DATETIME(3) keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """The moment as an aware UTC datetime: MySQL hands back naive ones, and ours are all UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clip_message(message: str | None) -> str | None:
    """A progress message that fits its column; None for none."""
    return message[:MAX_MESSAGE_CHARS] if message else None


def isoformat(moment: datetime | None) -> str | None:
    """`2026-11-23T10:18:31.123Z`, the one timestamp format of the API."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """One row of the `jobs` table."""

    id: str
    owner: str
    type: str
    status: JobStatus
    payload: dict[str, Any]
    created_at: datetime
    max_attempts: int
    timeout_seconds: int
    attempts: int = 0
    #: The batch the job is a member (or the `then`) of.
    batch_id: str | None = None
    #: The ids the job was submitted with in `dependsOn` (a `then` job's are its batch's members).
    depends_on: list[str] | None = None
    #: A WAITING job that runs even when a dependency failed (a `then` with thenOnFailure "run").
    run_on_failure: bool = field(default=False, repr=False)
    progress: int = 0
    progress_detail: dict[str, Any] | None = None
    message: str | None = None
    result: Any = None
    #: Bytes of the result's JSON, and the key of its object when it is too large to be inline.
    result_bytes: int | None = None
    result_key: str | None = None
    error: str | None = None
    #: The error of the run before a retry (POST /jobs/{id}/retry), kept while this run goes on.
    previous_error: str | None = None
    cancel_requested: bool = False
    #: When a SCHEDULED job is to start (None: at once).
    run_at: datetime | None = None
    #: The queue its messages go to (queue.JobQueue picks it).
    priority: Priority = Priority.NORMAL
    #: Waiting in MySQL for a free slot of its owner's running cap, no message sent (holds.py).
    held: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    #: Where the completion webhook goes (POST /jobs' `callbackUrl`), if anywhere (webhooks/).
    callback_url: str | None = field(default=None, repr=False)
    #: Not stored in MySQL: the worker's estimate from its observed chunk rate.
    eta_seconds: int | None = None
    checkpoint: dict[str, Any] | None = field(default=None, repr=False)
    #: The fence: the token of the worker that last started or claimed the job (read with the
    #: checkpoint); a holder's MySQL writes win only while their token is still this one.
    lease_token: str | None = field(default=None, repr=False)
    #: Deaths in a row of the job's workers at chunk `death_chunk` (read with the checkpoint).
    deaths: int = field(default=0, repr=False)
    death_chunk: int | None = field(default=None, repr=False)

    def snapshot(self) -> JobSnapshot:
        """What a client may see of the job now."""
        return JobSnapshot(
            id=self.id,
            owner=self.owner,
            type=self.type,
            status=self.status,
            created_at=as_utc(self.created_at),
            updated_at=as_utc(self.updated_at or self.created_at),
            max_attempts=self.max_attempts,
            attempts=self.attempts,
            batch_id=self.batch_id,
            depends_on=self.depends_on,
            progress=self.progress,
            progress_detail=self.progress_detail,
            message=self.message,
            eta_seconds=self.eta_seconds,
            result=self.result,
            result_bytes=self.result_bytes,
            result_key=self.result_key,
            error=self.error,
            previous_error=self.previous_error,
            cancel_requested=self.cancel_requested,
            run_at=None if self.run_at is None else as_utc(self.run_at),
            priority=self.priority,
            started_at=None if self.started_at is None else as_utc(self.started_at),
            finished_at=None if self.finished_at is None else as_utc(self.finished_at),
        )


@dataclass(frozen=True)
class JobSnapshot:
    """A job as a client may see it at one moment: no payload, checkpoint or fence.

    Made from a row, or kept in Redis by the worker after every chunk (hotstate.py); the API's JSON
    is built from it at the HTTP edge (http.job_view).
    """

    id: str
    owner: str
    type: str
    status: JobStatus
    created_at: datetime
    #: The last checkpoint (or any change) of the job: how `stalled` is told.
    updated_at: datetime
    max_attempts: int
    attempts: int = 0
    batch_id: str | None = None
    depends_on: list[str] | None = None
    progress: int = 0
    progress_detail: dict[str, Any] | None = None
    message: str | None = None
    #: The worker's estimate from the observed rate of the type's units; not kept in MySQL.
    eta_seconds: int | None = None
    result: Any = None
    #: Bytes of the result's JSON; with `result_key`, the result is an object in RESULTS_BUCKET.
    result_bytes: int | None = None
    result_key: str | None = None
    error: str | None = None
    #: The error of the run before a retry.
    previous_error: str | None = None
    cancel_requested: bool = False
    run_at: datetime | None = None
    priority: Priority = Priority.NORMAL
    started_at: datetime | None = None
    finished_at: datetime | None = None
