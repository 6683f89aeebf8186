"""The public API a job type is written against: `JobType`, `Step`, `JobContext` and `Objects`.

A job type turns a payload into a first state (`start`), does one chunk of work from a state to
the next (`step`), and turns the last state into a result (`finish`). States are JSON values: the
worker checkpoints them after every chunk, and a chunk may run again from the last checkpoint
after a crash, so a step must be safe to redo (`jobs check-type` proves it). Everything a type
needs from the platform comes in through its `JobContext`; a type imports nothing else of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .. import errors

#: Ceiling of a job's state, in bytes of JSON: it is written to Redis after every chunk and to MySQL
#: at every hand-off (`jobs check-type` enforces it; keep large data in objects of the job's own).
MAX_STATE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Step:
    """The outcome of one chunk: the next state and how far the job has got.

    `done` and `total` are in the type's own units (steps, rows, bytes): progress is done/total
    and the ETA comes from the units per second the worker observes.
    """

    state: Any
    done: int
    total: int | None = None
    finished: bool = False
    stage: str | None = None
    message: str | None = None


class Objects(Protocol):
    """S3 as a job may use it: reads of its inputs, writes and reads of objects of its own."""

    def check_input(self, bucket: str, key: str) -> None:
        """Raise errors.InvalidPayload unless the job may read s3://bucket/key: an object of the
        service's input buckets under the owner's prefix `inputs/<owner>/`, which exists. At submit
        this is one HeadObject (none for another owner's key, which answers as a missing one)."""

    def size(self, bucket: str, key: str) -> int:
        """The input object's length in bytes."""

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` of the input object, both inclusive (as S3's Range header)."""

    def put(self, name: str, data: bytes) -> str:
        """Store an object of this job's own under `name`; returns its s3:// address."""

    def get(self, name: str) -> bytes:
        """An object this job stored with `put`."""


def read_next(
    objects: Objects, bucket: str, key: str, *, size: int | None, offset: int, length: int
) -> tuple[int, bytes]:
    """The input's size (read when `size` is None: on the first chunk) and up to `length` of its
    bytes from `offset`, b"" at the end. A short read means the object changed under the job."""
    if size is None:
        size = objects.size(bucket, key)
    end = min(offset + length, size)
    data = objects.read_range(bucket, key, offset, end - 1) if end > offset else b""
    if len(data) != end - offset:
        raise errors.ObjectChanged(f"s3://{bucket}/{key} changed while the job read it")
    return size, data


@dataclass(frozen=True)
class JobContext:
    """What the platform gives a job type's methods: who the job is, and the tools it may use."""

    #: None while a payload is validated at submit (the job does not exist yet).
    job_id: str | None
    #: The API key id the job belongs to.
    owner: str
    objects: Objects
    #: A logger whose lines carry the job's id and owner (Powertools' Logger in Lambda).
    log: Any
    _remaining_ms: Callable[[], float] = field(default=lambda: math.inf, repr=False)
    _dependency_results: Callable[[str | None, int], list[dict[str, Any]]] = field(
        default=lambda after, limit: [], repr=False
    )

    def remaining_ms(self) -> float:
        """Milliseconds left in this invocation (infinite outside Lambda). A step that can split its
        work may stop early; the worker hands off between chunks by itself."""
        return self._remaining_ms()

    def dependency_results(self, *, after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The outcomes of the jobs this one waited for (a batch's members, for its `then`; its
        `dependsOn`), in id order, `limit` (1-500) at a time after the job id `after`: each
        `{"jobId", "status", "result", "error"}`, a result kept as an object read from it. Empty
        past the last, and for a job that waited for none. Reads MySQL: call it from a step that
        checkpoints where it got to (the last jobId), not on every chunk from the start."""
        return self._dependency_results(after, max(1, min(500, limit)))


class JobType:
    """Base of every job type. Set `name` and `payload_schema`, write `step`; the rest has defaults.

    A module named in JOB_TYPES (or a built-in one) offers every concrete subclass it defines, that
    is every subclass with a `name`; each is instantiated once, with no arguments.
    """

    #: How clients name the type in `POST /jobs` (`type`); unique in a deployment.
    name: ClassVar[str] = ""
    #: JSON Schema of the payload: POST /jobs checks it (defaults filled in), the OpenAPI document
    #: publishes it. Anything the schema cannot say goes into `validate`.
    payload_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: At most this many jobs of the type run at once in the deployment; None for no cap.
    max_concurrency: ClassVar[int | None] = None

    def validate(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Checks across fields and normalising, after the schema; raise errors.InvalidPayload.
        Runs at submit, so it must be cheap: no I/O but `ctx.objects.check_input` for inputs (one
        HeadObject), and again in the worker before each invocation's first chunk (no request)."""
        return payload

    def start(self, payload: dict[str, Any], ctx: JobContext) -> Any:
        """The state before the first chunk (a JSON value)."""
        return None

    def step(self, payload: dict[str, Any], state: Any, ctx: JobContext) -> Step:
        """Do one chunk of work from `state`; safe to redo from the same state."""
        raise NotImplementedError(f"job type {self.name!r} has no step")

    def finish(self, payload: dict[str, Any], state: Any, ctx: JobContext) -> Any:
        """The job's result from its last state (a JSON value)."""
        return state

    def chunk_seconds(self, payload: dict[str, Any]) -> float | None:
        """Expected seconds per chunk before any was observed (the first Retry-After, the first
        hand-off margin), or None."""
        return None

    def retryable(self, exc: Exception) -> bool:
        """Whether a step that raised `exc` is worth another attempt (from the last checkpoint).
        By default our errors say so themselves (`PermanentFailure` and its kin do not retry) and
        any other exception retries until maxAttempts."""
        return errors.retryable(exc)
