"""The retry policy, declared in one place: when a failed job runs again, and when it fails for good.

- A step that raised: the job type's `retryable(exc)` decides whether another attempt can help (by
  default our errors say so themselves, `PermanentFailure` and its kin do not retry, and any other
  exception does). A retryable error on the job's last attempt (`maxAttempts`) fails the job with
  "(attempt n of n)"; otherwise the job runs again from its last checkpoint after `backoff` seconds.
- A dependency down during the run (S3, MySQL, Redis: `DependencyUnavailable`) is no failure of
  the job: its attempts stay as they are, its message says what it waits for, and the run goes on
  from its last checkpoint after `wait_seconds` (the worker's `_wait_for`), until the job's
  timeoutSeconds.
- An error while setting a run up (before its first chunk: loading the type, checking the payload):
  `errors.retryable` decides. A retryable one (a dependency down) is left to SQS, which delivers the
  record again and counts it toward the dead-letter queue; any other fails the job at once.

The delay is exponential backoff with full jitter: uniform over [0, base * 2^(attempt-1)], capped
at SQS's longest DelaySeconds (900 s), so failing jobs spread out instead of retrying in step
(https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from . import errors
from .jobs import JobType
from .lifecycle import describe
from .models import Job

#: SQS's longest DelaySeconds.
MAX_DELAY_SECONDS = 900


@dataclass(frozen=True)
class Decision:
    """What follows a failed step: a retry after `delay_seconds`, or the end of the job with `error`."""

    retry: bool
    #: The error the job keeps: the failed attempt's, or (no retry) its final one.
    error: str
    delay_seconds: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter under an exponential ceiling, and the retry-or-fail rule."""

    #: Ceiling of the first delay; doubled for each further failed attempt.
    base_seconds: float
    cap_seconds: int = MAX_DELAY_SECONDS
    #: Ceiling of the first wait for a dependency that is down; doubled per wait, up to `wait_cap_seconds`.
    wait_base_seconds: float = 5
    wait_cap_seconds: int = 60

    def wait_seconds(self, waits: int, rng: random.Random) -> int:
        """Seconds before a run tries again after its `waits`-th wait in a row (1 for the first) for a
        dependency: between half the ceiling and the ceiling, so waiting jobs neither hammer nor bunch."""
        ceiling = min(self.wait_cap_seconds, self.wait_base_seconds * 2 ** (waits - 1))
        return max(1, math.ceil(rng.uniform(ceiling / 2, ceiling)))

    def backoff(self, failed_attempt: int, rng: random.Random) -> int:
        """Seconds before the attempt after `failed_attempt` (1 for the first)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (failed_attempt - 1))
        return math.ceil(rng.uniform(0, ceiling))

    def after_step_error(self, job: Job, job_type: JobType, exc: Exception, rng: random.Random) -> Decision:
        """Retry or fail, after a step of `job` (on attempt `job.attempts`) raised `exc`."""
        error = describe(exc)
        if not job_type.retryable(exc):
            return Decision(retry=False, error=error)
        if job.attempts >= job.max_attempts:
            return Decision(retry=False, error=f"{error} (attempt {job.attempts} of {job.max_attempts})")
        return Decision(retry=True, error=error, delay_seconds=self.backoff(job.attempts, rng))

    @staticmethod
    def redelivers(exc: BaseException) -> bool:
        """Whether an error while setting a run up is left to SQS's redelivery (else the job fails)."""
        return errors.retryable(exc)
