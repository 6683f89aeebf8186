"""The registry of job types and the chunked contract every type follows.

A job type turns a payload into a first state (`start`), does one chunk of work from a state to
the next (`step`), and turns the last state into a result (`finish`). States are JSON values: the
worker checkpoints them after every chunk, and a chunk may run again from the last checkpoint
after a crash, so a step must be safe to redo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .. import errors


@dataclass(frozen=True)
class Step:
    """The outcome of one chunk: the next state and how far the job has got."""

    state: Any
    done: int
    total: int | None = None
    finished: bool = False
    stage: str | None = None
    message: str | None = None


class JobType(Protocol):
    """What a job type provides. Raise errors.InvalidPayload for payloads that can never run."""

    name: str
    #: JSON Schema of the payload: POST /jobs checks it, the OpenAPI document publishes it.
    payload_schema: dict[str, Any]

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Checks the schema cannot express (across fields), and normalising; after the schema."""

    def start(self, payload: dict[str, Any]) -> Any:
        """The state before the first chunk."""

    def step(self, payload: dict[str, Any], state: Any) -> Step:
        """Do one chunk of work."""

    def finish(self, payload: dict[str, Any], state: Any) -> Any:
        """The job's result from its last state (a JSON value)."""

    def chunk_seconds(self, payload: dict[str, Any]) -> float | None:
        """Expected seconds per chunk before any was observed (for Retry-After), or None."""


_REGISTRY: dict[str, JobType] = {}


def register(job_type: JobType) -> JobType:
    """Make a job type available to POST /jobs and the worker."""
    _REGISTRY[job_type.name] = job_type
    return job_type


def get(name: str) -> JobType:
    """The registered job type of that name, or errors.UnknownJobType."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise errors.UnknownJobType(f"unknown job type {str(name)[:64]!r}; known types: {known}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


_validators: dict[str, Any] = {}


def check_payload(job_type: JobType, payload: Any) -> dict[str, Any]:
    """The payload checked against the type's schema (defaults filled in), then by the type itself."""
    import fastjsonschema  # 13 ms of imports: only paths that take payloads pay for them

    validator = _validators.get(job_type.name)
    if validator is None:
        validator = _validators[job_type.name] = fastjsonschema.compile(job_type.payload_schema)
    try:
        clean = validator(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise errors.InvalidPayload(exc.message.replace("data", "payload", 1)) from None
    return job_type.validate(clean)


from . import csv_stats, sleep  # noqa: E402, F401  (built-in types register themselves)
