"""The Python client of the jobs API: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

    from jobs_client import Client
    with Client("https://api.example.com", "KEY") as jobs:
        done = jobs.wait(jobs.submit("sleep", {"steps": 5}))

Imports nothing of the server: `pip install ./client` is enough.
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    JobsError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    TransportError,
    UploadFailed,
    WaitTimeout,
    WebhookVerificationError,
)
from .models import Batch, Delivery, Job, JobStatus, Limits, Page, ProgressDetail, Schedule, Submitted, Upload
from .retry import NO_RETRIES, RetryPolicy
from .webhooks import verify_webhook

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Batch",
    "Client",
    "Conflict",
    "Forbidden",
    "Job",
    "JobStatus",
    "JobsError",
    "Delivery",
    "Limits",
    "NO_RETRIES",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "ProgressDetail",
    "RetryPolicy",
    "Schedule",
    "ServerError",
    "Submitted",
    "TooManyRequests",
    "TransportError",
    "Upload",
    "UploadFailed",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
