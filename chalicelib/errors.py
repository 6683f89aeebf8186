"""The one tree of errors this package raises, and the one sanitiser of error text clients see.

I/O modules turn driver exceptions into these (`raise ... from exc`); http.py turns them into HTTP
answers in one table; the worker tells retryable from permanent by type. Driver messages carry
endpoints, ARNs and account ids (issue 15: a job's error read `Could not connect to the endpoint
URL: "http://127.0.0.1:1/..."`): `sanitise` strips them from every text a client may read.
"""

import re
from typing import overload

#: What a client must never read in an error, and what stands in its place. The input's own
#: s3://bucket/key stays: clients named it.
_SECRETS = (
    # A stack trace, from its first line to the end (a traceback is never one line).
    (re.compile(r"Traceback \(most recent call last\):.*", re.S), "[stack trace]"),
    (re.compile(r'^\s*File "[^"]*", line \d+.*$', re.M), "[stack frame]"),
    (re.compile(r"\barn:aws[a-z-]*:[^\s\"'<>,;)]*", re.I), "[arn]"),
    # URLs of any scheme but s3 (http, https, mysql, redis, rediss...), quoted or not.
    (re.compile(r"\b(?!s3://)[a-z][a-z0-9+.-]*://[^\s\"'<>]*", re.I), "[endpoint]"),
    (re.compile(r"\b[\w.-]+\.amazonaws\.com(?::\d+)?\b", re.I), "[endpoint]"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "[endpoint]"),
    (re.compile(r"\blocalhost(?::\d+)?\b", re.I), "[endpoint]"),
    # PyMySQL's "Can't connect to MySQL server on 'db.internal'": a host name of any shape.
    (re.compile(r"(?<=server on ')[^']+(?=')", re.I), "[endpoint]"),
    (re.compile(r"(?<![\w-])\d{12}(?![\w-])"), "[account]"),
)


class JobsError(Exception):
    """Base of every error of this package."""

    code = "InternalError"
    #: Whether a job step that failed with this error is worth another attempt.
    retryable = True

    def __init__(self, message: str = "", **details):
        super().__init__(message or self.__doc__)
        self.message = message or (self.__doc__ or "").strip()
        self.details = details


# --- The client's mistakes (4xx) -----------------------------------------------------------------
class ClientError(JobsError):
    """The request cannot be served as sent."""

    code = "BadRequest"
    retryable = False


class InvalidJson(ClientError):
    """The body is not a JSON object."""

    code = "InvalidJson"


class InvalidRequest(ClientError):
    """A field, header or query parameter has a wrong value."""

    code = "InvalidRequest"


class UnknownJobType(ClientError):
    """No job type of that name is registered."""

    code = "UnknownJobType"


class InvalidPayload(ClientError):
    """The payload does not fit the job type; the job would fail on every attempt."""

    code = "InvalidPayload"


class InvalidJobId(ClientError):
    """The id is not a job id."""

    code = "InvalidJobId"


class MissingApiKey(ClientError):
    """No API key identifies the caller."""

    code = "Forbidden"


class PayloadTooLarge(ClientError):
    """The body is over the size limit."""

    code = "PayloadTooLarge"


class NotFound(ClientError):
    """Nothing is at that address."""

    code = "NotFound"


class JobNotFound(NotFound):
    """No job of this caller has that id."""

    code = "JobNotFound"


class ScheduleNotFound(NotFound):
    """No schedule of this caller has that id."""

    code = "ScheduleNotFound"


class BatchNotFound(NotFound):
    """No batch of this caller has that id."""

    code = "BatchNotFound"


class ActiveJobLimit(ClientError):
    """The client has as many unfinished jobs as its plan allows (maxActiveJobs): a 429."""

    code = "ActiveJobLimit"


class Conflict(ClientError):
    """The request conflicts with the job's state."""

    code = "Conflict"


class JobFinished(Conflict):
    """The job has finished and can no longer be cancelled."""

    code = "JobFinished"


class JobNotCompleted(Conflict):
    """The job has no result: it has not completed (yet, or ever)."""

    code = "JobNotCompleted"


class JobNotRetryable(Conflict):
    """Only a FAILED or CANCELLED job can be retried; the answer names the job's status."""

    code = "JobNotRetryable"


class ScheduleLimit(Conflict):
    """The client has as many schedules as its plan allows (maxSchedules): a 409, as waiting frees none."""

    code = "ScheduleLimit"


class IdempotencyKeyReused(Conflict):
    """This Idempotency-Key was used before with a different request."""

    code = "IdempotencyKeyReused"


# --- A dependency failed (503): the same request may succeed later --------------------------------
class DependencyUnavailable(JobsError):
    """A service the platform depends on did not answer."""

    code = "ServiceUnavailable"


class StoreUnavailable(DependencyUnavailable):
    """MySQL did not answer."""


class HotStateUnavailable(DependencyUnavailable):
    """Redis did not answer."""


class QueueUnavailable(DependencyUnavailable):
    """SQS did not accept the message."""


class ObjectStoreUnavailable(DependencyUnavailable):
    """S3 did not answer."""


# --- A job that can never succeed: the worker fails it at once, without retries ------------------
class PermanentFailure(JobsError):
    """The job cannot succeed however often it is retried."""

    code = "PermanentFailure"
    retryable = False


class ObjectNotFound(PermanentFailure):
    """The object the job reads does not exist."""

    code = "ObjectNotFound"


class ObjectAccessDenied(PermanentFailure):
    """The worker may not read the object the job names (S3 answered AccessDenied)."""

    code = "ObjectAccessDenied"


class ObjectChanged(PermanentFailure):
    """The object the job reads changed while the job read it (shorter: S3 answered InvalidRange)."""

    code = "ObjectChanged"


class ResultTooLarge(PermanentFailure):
    """The job's result is over the largest result a job may have (or its store can hold)."""

    code = "ResultTooLarge"


class CheckpointTooLarge(PermanentFailure):
    """The job's state is over the checkpoint ceiling (MAX_STATE_BYTES)."""

    code = "CheckpointTooLarge"


class ValueTooLarge(PermanentFailure):
    """A statement is larger than MySQL accepts (max_allowed_packet): sending it again cannot help."""

    code = "ValueTooLarge"

    def __init__(self, message: str, *, size: int, limit: int):
        super().__init__(message, size=size, limit=limit)
        self.size, self.limit = size, limit


# --- The deployment itself is wrong (503 until it is fixed) -----------------------------------------
class Misconfigured(JobsError):
    """The deployment's configuration cannot work (e.g. a JOB_TYPES module that does not import)."""

    code = "ServiceMisconfigured"


def retryable(exc: BaseException) -> bool:
    """Whether a job step that raised `exc` is worth another attempt: ours say so, others retry."""
    return exc.retryable if isinstance(exc, JobsError) else True


@overload
def sanitise(text: str) -> str: ...
@overload
def sanitise(text: None) -> None: ...
def sanitise(text: str | None) -> str | None:
    """Text a client may read: endpoints, ARNs, account ids and stack frames replaced by [endpoint],
    [arn], [account], [stack frame]. Every client-visible error and message passes through it."""
    if not text:
        return text
    for pattern, stand_in in _SECRETS:
        text = pattern.sub(stand_in, text)
    return text
