"""What the chunk loop keeps between chunks: the run of a job and the invocation's clock.

A `Run` is one invocation's hold on a job: the row, the type's state, the checkpoint sequence and
the holder's token, and what its chunks have shown so far (cadence, units per second, the longest
chunk), from which it derives the job's progress and ETA. An `Invocation` is the Lambda
invocation's clock: the time it has left, and whether a chunk still fits before a hand-off.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .hotstate import RunningView
from .jobs import MAX_STATE_BYTES, JobContext, JobType, Step
from .models import Job, clip_message, utcnow

#: Weight of the newest chunk in the running averages of chunk durations and of units per second.
CADENCE_WEIGHT = 0.3
#: The time left must cover this many of the longest chunk seen, besides the hand-off reserve.
CHUNK_SAFETY_FACTOR = 2
#: JSON as the checkpoint keeps it; one encoder, not one made per call as json.dumps does.
_encode = json.JSONEncoder(separators=(",", ":")).encode


#: Longest ETA shown: beyond it (a year) the estimate says nothing.
MAX_ETA_SECONDS = 365 * 86400


@dataclass
class Run:
    """One invocation's hold on a job: the row, the type's state, the checkpoint sequence, the token.

    The token names this holder twice: in Redis as the lease (a timed hold, renewed per chunk) and in
    MySQL as the fence (`lease_token`) every write of the holder is guarded by.
    """

    job: Job
    job_type: JobType
    ctx: JobContext
    payload: dict[str, Any]
    state: Any
    seq: int
    token: str
    cadence_ms: float | None = None
    #: The type's units done at the last checkpoint, and the observed units per second.
    done: int = 0
    units_per_second: float | None = None
    #: Longest chunk of this run; before any, the type's own estimate.
    longest_ms: float = 0.0
    #: Chunks run in this run, and by the job in all its runs (kept in the checkpoint).
    chunks: int = 0
    #: Milliseconds the chunks of this run took, together (its ChunkTime metric is their mean).
    chunks_ms: float = 0.0
    chunks_done: int = 0
    #: The last chunk ran, but the end is not written yet (its dependency was down): only `finish` is left.
    finished: bool = False
    #: Waits in a row for a dependency that is down (the next wait is longer).
    waits: int = 0
    #: The number of the hand-off this run took in the chain of its token (0: none); the next is one more.
    hop: int = 0
    #: Encodes the job's view for each chunk's write (its fixed fields once).
    view: RunningView = field(default_factory=RunningView, repr=False)

    @classmethod
    def resume(
        cls,
        job: Job,
        job_type: JobType,
        ctx: JobContext,
        payload: dict[str, Any],
        token: str,
        *,
        checkpoints: Iterable[dict[str, Any] | None],
    ) -> Run:
        """The run from the newest of `checkpoints` (by sequence number), or from the type's start."""
        expected_ms = (job_type.chunk_seconds(payload) or 0) * 1000
        newest = newest_checkpoint(checkpoints)
        if newest is None:
            return cls(job, job_type, ctx, payload, job_type.start(payload, ctx), 0, token, longest_ms=expected_ms)
        job.progress, job.progress_detail, job.message = newest["progress"]
        done = (job.progress_detail or {}).get("done") or 0
        return cls(
            job,
            job_type,
            ctx,
            payload,
            newest["state"],
            newest["seq"],
            token,
            longest_ms=expected_ms,
            done=done,
            chunks_done=newest.get("chunks", 0),
            finished=newest.get("finished", False),
            waits=newest.get("waits", 0),
        )

    def checkpoint(self) -> str:
        """What a later run resumes from, as JSON: the sequence number, the type's state, the progress.

        Raises CheckpointTooLarge when the state is over MAX_STATE_BYTES of JSON: checked before
        every write, to Redis and to MySQL alike, so neither ever holds a state the other refuses.
        The state is encoded once, measured and put in the text as it is.
        """
        state = _encode(self.state)  # ASCII (ensure_ascii): characters are bytes
        size = len(state)
        if size > MAX_STATE_BYTES:
            raise errors.CheckpointTooLarge(
                f"the state after chunk {self.chunks_done} is {size} bytes of JSON, over the checkpoint ceiling"
                f" of {MAX_STATE_BYTES} (MAX_STATE_BYTES): keep large data in objects (ctx.objects.put)"
                " and checkpoint their keys",
                size=size,
                limit=MAX_STATE_BYTES,
            )
        job = self.job
        progress = _encode([job.progress, job.progress_detail, job.message])
        return (
            f'{{"seq":{self.seq},"state":{state},"progress":{progress},"chunks":{self.chunks_done},'
            f'"finished":{"true" if self.finished else "false"},"waits":{self.waits}}}'
        )

    def observe(self, step: Step, elapsed_ms: float) -> None:
        """Take in a chunk's outcome: next state, progress, chunk cadence, units per second and ETA."""
        job = self.job
        self.state, self.chunks, self.chunks_done = step.state, self.chunks + 1, self.chunks_done + 1
        self.finished, self.waits = step.finished, 0
        self.longest_ms = max(self.longest_ms, elapsed_ms)
        self.chunks_ms += elapsed_ms
        self.cadence_ms = _average(self.cadence_ms, elapsed_ms)
        if elapsed_ms > 0 and step.done >= self.done:
            self.units_per_second = _average(self.units_per_second, (step.done - self.done) * 1000 / elapsed_ms)
        self.done = step.done
        job.progress = min(100, step.done * 100 // step.total) if step.total else job.progress
        job.progress_detail = {"done": step.done, "total": step.total, "stage": step.stage}
        job.message = clip_message(step.message)
        if step.total and self.units_per_second:
            # The type's own units (bytes, rows, steps) at the rate they were observed to go; a rate
            # that decayed towards nothing (chunk after chunk without progress) says no ETA at all.
            eta = max(0, step.total - step.done) / self.units_per_second
            job.eta_seconds = math.ceil(eta) if eta < MAX_ETA_SECONDS else None
        job.updated_at = utcnow()


def newest_checkpoint(checkpoints: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The newest of `checkpoints` by sequence number (Redis's or MySQL's), or None if there is none."""
    found = [c for c in checkpoints if c]
    return max(found, key=lambda c: c["seq"]) if found else None


def running_chunk(checkpoints: Iterable[dict[str, Any] | None]) -> int:
    """The number (from 1) of the chunk a job runs next from the newest of `checkpoints`."""
    newest = newest_checkpoint(checkpoints)
    return (newest or {}).get("chunks", 0) + 1


class Invocation:
    """One Lambda invocation's clock: the time it has left, and the longest chunk run in it."""

    def __init__(self, context: Any, *, reserve_ms: int):
        self._context = context
        self._reserve_ms = reserve_ms
        self.longest_ms = 0.0

    def remaining_ms(self) -> float:
        """Milliseconds left before Lambda's time limit (infinite outside Lambda)."""
        if self._context is None:
            return math.inf
        return self._context.get_remaining_time_in_millis()

    def has_time_for(self, chunk_ms: float) -> bool:
        """Whether a chunk of about `chunk_ms` fits, leaving the reserve for a hand-off."""
        return self.remaining_ms() >= self._reserve_ms + CHUNK_SAFETY_FACTOR * chunk_ms


def _average(mean: float | None, value: float) -> float:
    """The running average with `value` taken in (the first value is the average)."""
    return value if mean is None else CADENCE_WEIGHT * value + (1 - CADENCE_WEIGHT) * mean
