"""Run and check a job type outside the platform: for a team's own tests and `jobs check-type`.

    from chalicelib.jobs.testing import MemoryObjects, assert_redo_safe, context

    def test_word_frequency_is_safe_to_redo():
        objects = MemoryObjects({("texts", "a.txt"): b"to be or not to be"})
        assert_redo_safe(WordFrequency(), {"bucket": "texts", "key": "a.txt"}, context=context(objects=objects))

`check_job_type` runs the type four ways and compares them with the first:

1. uninterrupted, the states kept as Python objects;
2. with the state JSON round-tripped after every chunk (as every checkpoint does);
3. with every chunk run twice from its checkpoint (a crash after the step, before the checkpoint
   write), going on from the second run;
4. with a hand-off after every chunk: a fresh instance of the type for each chunk.

It also checks that every state is JSON and under the checkpoint ceiling, that progress never goes
backwards, and that each chunk stays within a time budget. The first divergence is reported: which
chunk, which way, expected against got.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from .registry import JobTypes
from .sdk import MAX_STATE_BYTES, JobContext, JobType, Step

#: Longest a chunk may take by default: well inside the worker's lease (LEASE_SECONDS, 120 s).
CHUNK_BUDGET_SECONDS = 60.0
#: A type that has not finished after this many chunks is taken to loop.
MAX_CHUNKS = 100_000
_SHOWN_CHARS = 300

WAYS = (
    "uninterrupted",
    "state JSON round-tripped after every chunk",
    "every chunk run twice from its checkpoint",
    "a hand-off after every chunk",
)


class MemoryObjects:
    """`ctx.objects` over a dict, for tests: inputs keyed by (bucket, key), the job's own objects by name."""

    def __init__(self, inputs: dict[tuple[str, str], bytes] | None = None):
        self.inputs = dict(inputs or {})
        self.own: dict[str, bytes] = {}

    def check_input(self, bucket: str, key: str) -> None:
        return None

    def size(self, bucket: str, key: str) -> int:
        return len(self._input(bucket, key))

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        return self._input(bucket, key)[start : end + 1]

    def put(self, name: str, data: bytes) -> str:
        self.own[name] = bytes(data)
        return f"memory://{name}"

    def get(self, name: str) -> bytes:
        try:
            return self.own[name]
        except KeyError:
            raise errors.ObjectNotFound(f"no object {name!r} of this job") from None

    def _input(self, bucket: str, key: str) -> bytes:
        try:
            return self.inputs[(bucket, key)]
        except KeyError:
            raise errors.ObjectNotFound(f"s3://{bucket}/{key} does not exist") from None


def context(
    *,
    job_id: str = "01JOBUNDERTEST000000000000",
    owner: str = "tester",
    objects: Any = None,
    remaining_ms: Callable[[], float] = lambda: math.inf,
) -> JobContext:
    """A context for running a type in a test: MemoryObjects unless `objects` is given."""
    return JobContext(
        job_id=job_id,
        owner=owner,
        objects=objects if objects is not None else MemoryObjects(),
        log=logging.getLogger(f"jobs.testing.{owner}"),
        _remaining_ms=remaining_ms,
    )


_new_context = context  # for the functions below, whose `context` argument hides it


def run(job_type: JobType, payload: dict[str, Any], *, context: JobContext | None = None) -> Any:
    """The type's result for `payload` (validated, defaults filled in), run uninterrupted."""
    ctx = context or _new_context()
    payload = JobTypes([job_type]).check_payload(job_type, payload, ctx)
    result, _, taken = run_steps(job_type, payload, ctx, steps=MAX_CHUNKS)
    if not taken[-1].finished:
        raise AssertionError(f"{job_type.name}: not finished after {MAX_CHUNKS} chunks")
    return result


def run_steps(
    job_type: JobType, payload: dict[str, Any], ctx: JobContext, *, state: Any = None, steps: int | None = None
) -> tuple[Any, Any, list[Step]]:
    """Chunks from `state` (the start when None) until the type finishes or `steps` ran, with the
    payload as given (not validated): (the result, or None when unfinished; the last state; the Steps)."""
    state = job_type.start(payload, ctx) if state is None else state
    taken: list[Step] = []
    while steps is None or len(taken) < steps:
        step = job_type.step(payload, state, ctx)
        taken.append(step)
        state = step.state
        if step.finished:
            return job_type.finish(payload, state, ctx), state, taken
    return None, state, taken


@dataclass
class Report:
    """What `check_job_type` found; `ok` when the type is safe to run here."""

    job_type: str
    chunks: int = 0
    result: Any = None
    #: The first problem found, explained; None when there is none.
    problem: str | None = None
    slowest_chunk_seconds: float = 0.0
    largest_state_bytes: int = 0
    ways: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.ok:
            return (
                f"{self.job_type}: safe to redo ({self.chunks} chunks, each way the same result; largest state "
                f"{self.largest_state_bytes} bytes, slowest chunk {self.slowest_chunk_seconds:.3f} s)"
            )
        return f"{self.job_type}: NOT SAFE\n{self.problem}"


class _Problem(Exception):
    """The first divergence or broken rule; its text is the report's."""


def check_job_type(
    job_type: JobType,
    payload: dict[str, Any],
    *,
    context: JobContext | None = None,
    chunk_budget_seconds: float = CHUNK_BUDGET_SECONDS,
    max_state_bytes: int = MAX_STATE_BYTES,
    max_chunks: int = MAX_CHUNKS,
) -> Report:
    """Run the type the four ways and report the first way it is not safe to redo (see the module)."""
    ctx = context or _new_context()
    report = Report(job_type.name)
    checker = _Checker(job_type, ctx, report, chunk_budget_seconds, max_state_bytes, max_chunks)
    try:
        payload = JobTypes([job_type]).check_payload(job_type, payload, ctx)
        checker.check(payload)
    except _Problem as problem:
        report.problem = str(problem)
    except errors.InvalidPayload as exc:
        report.problem = f"the payload is refused: {exc.message}"
    return report


def assert_redo_safe(job_type: JobType, payload: dict[str, Any], **options: Any) -> Report:
    """check_job_type, failing the test with the report's explanation when the type is not safe."""
    report = check_job_type(job_type, payload, **options)
    if not report.ok:
        raise AssertionError(str(report))
    return report


class _Checker:
    def __init__(
        self, job_type: JobType, ctx: JobContext, report: Report, budget: float, max_state_bytes: int, max_chunks: int
    ):
        self.job_type, self.ctx, self.report = job_type, ctx, report
        self.budget, self.max_state_bytes, self.max_chunks = budget, max_state_bytes, max_chunks

    def check(self, payload: dict[str, Any]) -> None:
        expected_states, expected_result = self._uninterrupted(payload)
        self.report.chunks, self.report.result = len(expected_states), json.loads(expected_result)
        self.report.ways.append(WAYS[0])
        for way in WAYS[1:]:
            states, result = self._run(way, payload)
            for chunk, (want, got) in enumerate(zip(expected_states, states, strict=False), start=1):
                if want != got:
                    raise _Problem(_diverged(way, f"chunk {chunk}: the state after it", want, got))
            if len(states) != len(expected_states):
                raise _Problem(
                    f"{way}: finished after {len(states)} chunks, uninterrupted after {len(expected_states)}"
                )
            if result != expected_result:
                raise _Problem(_diverged(way, "the result", expected_result, result))
            self.report.ways.append(way)

    def _uninterrupted(self, payload: dict[str, Any]) -> tuple[list[str], str]:
        """The reference run; also where states, progress and chunk times are checked."""
        job_type, ctx = self._fresh(), self.ctx
        state = job_type.start(payload, ctx)
        self._as_json(state, "the state from start")
        states: list[str] = []
        last: tuple[int, float] | None = None
        while True:
            chunk = len(states) + 1
            started = time.perf_counter()
            step = job_type.step(payload, state, ctx)
            elapsed = time.perf_counter() - started
            self.report.slowest_chunk_seconds = max(self.report.slowest_chunk_seconds, elapsed)
            if elapsed > self.budget:
                raise _Problem(
                    f"chunk {chunk} took {elapsed:.1f} s, over the budget of {self.budget:g} s: "
                    "make chunks smaller (the worker checkpoints and hands off between chunks only)"
                )
            _check_step(step, chunk)
            progress = (step.done, step.done / step.total if step.total else 0.0)
            if last is not None and (progress[0] < last[0] or progress[1] < last[1]):
                raise _Problem(
                    f"chunk {chunk}: progress went backwards: done {step.done} of {step.total} after {last[0]}"
                )
            last = progress
            encoded = self._as_json(step.state, f"chunk {chunk}: the state after it")
            states.append(encoded)
            state = step.state
            if step.finished:
                return states, self._as_json(job_type.finish(payload, state, ctx), "the result", limit=None)
            if chunk >= self.max_chunks:
                raise _Problem(f"not finished after {self.max_chunks} chunks (does step ever say finished=True?)")

    def _run(self, way: str, payload: dict[str, Any]) -> tuple[list[str], str]:
        """The run `way` describes; states as JSON text, for comparing."""
        job_type, ctx = self._fresh(), self.ctx
        state = json.loads(json.dumps(job_type.start(payload, ctx)))
        states: list[str] = []
        while len(states) < self.max_chunks:
            if way == WAYS[3]:
                job_type = self._fresh()
            if way == WAYS[2]:
                job_type.step(payload, copy.deepcopy(state), ctx)  # the run whose checkpoint was never written
            step = job_type.step(payload, state, ctx)
            encoded = json.dumps(step.state, sort_keys=True)
            states.append(encoded)
            state = json.loads(encoded)
            if step.finished:
                return states, json.dumps(job_type.finish(payload, state, ctx), sort_keys=True)
        return states, ""

    def _fresh(self) -> JobType:
        """A new instance of the type, as a new Lambda container makes (the same one if it takes arguments)."""
        try:
            return type(self.job_type)()
        except TypeError:
            return self.job_type

    def _as_json(self, value: Any, what: str, *, limit: int | None = -1) -> str:
        limit = self.max_state_bytes if limit == -1 else limit
        try:
            encoded = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _Problem(
                f"{what} is not JSON ({exc}): checkpoints are JSON, so this state cannot be "
                f"resumed: {_shown(repr(value))}"
            ) from None
        if json.loads(encoded) != value:
            raise _Problem(
                f"{what} changes in a JSON round trip (tuples become lists, keys become strings): "
                f"{_shown(repr(value))} becomes {_shown(encoded)}"
            )
        if limit is not None:
            size = len(encoded.encode())
            self.report.largest_state_bytes = max(self.report.largest_state_bytes, size)
            if size > limit:
                raise _Problem(
                    f"{what} is {size} bytes of JSON, over the checkpoint ceiling of {limit}: keep "
                    "large data in objects of the job's own (ctx.objects.put)"
                )
        return encoded


def _check_step(step: Any, chunk: int) -> None:
    if not isinstance(step, Step):
        raise _Problem(f"chunk {chunk}: step returned {type(step).__name__}, not chalicelib.jobs.Step")
    if not isinstance(step.done, int) or (step.total is not None and not isinstance(step.total, int)):
        raise _Problem(f"chunk {chunk}: done and total must be integers, got {step.done!r} and {step.total!r}")


def _diverged(way: str, what: str, expected: str, got: str) -> str:
    return (
        f"{way}: {what} differs from the uninterrupted run's, so a job resumed this way would end "
        f"differently (does it depend on something outside its state: a counter kept on the type, the "
        f"clock, randomness?)\n  expected: {_shown(expected)}\n  got:      {_shown(got)}"
    )


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + f"... ({len(text)} characters)"
