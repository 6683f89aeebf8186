"""The declared retry policy: the job type decides what is worth retrying, maxAttempts when to stop."""

import random
from datetime import UTC, datetime

from chalicelib import errors
from chalicelib.jobs import JobType
from chalicelib.models import Job, JobStatus
from chalicelib.retry import Decision, RetryPolicy


class _Ceiling(random.Random):
    def uniform(self, a, b):
        return b


class _OnlyTimeouts(JobType):
    name = "only-timeouts"

    def retryable(self, exc):
        return isinstance(exc, TimeoutError)


def _job(attempts, max_attempts=3):
    return Job(
        id="J",
        owner="o",
        type="only-timeouts",
        status=JobStatus.RUNNING,
        payload={},
        created_at=datetime.now(UTC),
        max_attempts=max_attempts,
        timeout_seconds=60,
        attempts=attempts,
    )


def test_the_job_type_decides_what_is_retried_and_max_attempts_when_it_stops():
    policy, rng, kind = RetryPolicy(base_seconds=2), _Ceiling(), _OnlyTimeouts()

    assert policy.after_step_error(_job(2), kind, TimeoutError("slow"), rng) == Decision(
        retry=True, error="TimeoutError: slow", delay_seconds=4
    )
    assert policy.after_step_error(_job(3), kind, TimeoutError("slow"), rng) == Decision(
        retry=False, error="TimeoutError: slow (attempt 3 of 3)"
    )
    assert policy.after_step_error(_job(1), kind, ValueError("bad"), rng) == Decision(
        retry=False, error="ValueError: bad"
    )


def test_setup_errors_are_redelivered_only_when_ours_say_a_retry_can_help():
    assert RetryPolicy.redelivers(errors.StoreUnavailable("MySQL: gone")) is True
    assert RetryPolicy.redelivers(errors.InvalidPayload("no")) is False
