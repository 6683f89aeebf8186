"""Every error the client raises: one tree under JobsError; the API's answers carry its code and message."""

from __future__ import annotations

from typing import Any

import httpx


class JobsError(Exception):
    """Base of every error of this client."""


class ApiError(JobsError):
    """The API answered with an error: `status`, the API's `code` and `message`, the whole `body`."""

    def __init__(self, status: int, code: str, message: str, *, body: Any = None, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the request cannot be served as sent (bad JSON, unknown type, invalid payload or id)."""


class Forbidden(ApiError):
    """403: no API key, or one the gateway does not know."""


class NotFound(ApiError):
    """404: no job of this key has that id (another key's jobs read the same)."""


class Conflict(ApiError):
    """409: the job's state does not allow it (finished, not completed), or an Idempotency-Key reused."""


class PayloadTooLarge(ApiError):
    """413: the body is over the API's limit."""


class TooManyRequests(ApiError):
    """429 after the retries: the usage plan's rate or quota (the gateway), or ActiveJobLimit."""


class ServerError(ApiError):
    """5xx after the retries (where retrying was safe): a dependency of the API is down."""


class TransportError(JobsError):
    """The API (or S3, for an upload or a result) could not be reached, or the connection broke."""


class UploadFailed(JobsError):
    """S3 refused the presigned upload (its status and the start of its answer)."""


class WaitTimeout(JobsError):
    """`wait` gave up before the job ended (its `job` is the last view seen)."""

    def __init__(self, message: str, job: Any = None):
        super().__init__(message)
        self.job = job


class WebhookVerificationError(JobsError):
    """A webhook's signature, timestamp or headers do not verify: do not trust its body."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
}


def from_response(response: httpx.Response, *, retry_after: float | None = None) -> ApiError:
    """The error of an API answer: `{"code", "message"}` from our API; API Gateway's own answers
    (`{"message": "Forbidden"}`) take their code from `x-amzn-ErrorType` or the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = message = None
    if isinstance(body, dict):
        code, message = body.get("code"), body.get("message")
    if not code:
        gateway = response.headers.get("x-amzn-ErrorType", "").split(":")[0]
        code = gateway.removesuffix("Exception") or response.reason_phrase.replace(" ", "") or str(response.status_code)
    if message is None:
        message = response.text[:300] if body is None else ""
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, str(code), str(message), body=body, retry_after=retry_after)
