"""The delivery function: one signed POST per due attempt of a job's completion webhook.

For each webhooks-queue record (`DeliveryMessage`: the job, the attempt due, not before when) it
reads the job's row (one SELECT) and runs the attempt only if the row says it is the next one of an
open webhook (any other copy is a duplicate and is dropped), then:

- builds the body, the Standard Webhooks envelope `{"type": "job.completed" | "job.failed" |
  "job.cancelled", "timestamp": <finishedAt>, "data": <the job's view>}` (a result kept in S3 is
  not in it: `resultUrl`, signed at the attempt, is), and signs it (`webhook-id` is
  `msg_<job id>_<finishedAt in epoch ms>`: the same on every attempt of one end, another for the end
  of a retried run, so a receiver that drops repeated ids drops neither; `webhook-timestamp` is the
  attempt's time);
- resolves the callback's host and refuses any address the guard refuses (guard.py), then POSTs to
  the address it checked, through the transport (transport.py: no redirects, short timeouts, a few
  KiB of the answer read);
- records the attempt in the row (one UPDATE, guarded by the number of attempts made, so two copies
  cannot both record the same one) and, for a retry, queues the next attempt.

A 2xx is delivered. Timeouts, connection errors, a name that does not resolve, 5xx and 429 are
retried with exponential backoff and jitter (`Schedule`) while the next try falls within
WEBHOOK_RETRY_SECONDS of the job's end; then, or at once for any other status (3xx and 4xx) and for
a refused address, the webhook is FAILED. A dependency that is down (MySQL, Secrets Manager, SQS)
is not an attempt: the record is reported failed and SQS delivers it again.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import errors, observability
from ..config import Settings
from ..models import CallbackState, Job, JobStatus, as_utc, isoformat
from ..observability import logger as log
from ..queue import DeliveryMessage, DeliveryQueue, parse_delivery
from ..results import Results
from ..store import JobStore
from . import guard, signing
from .transport import Answer, Transport

#: The longest delay SQS gives one message; longer waits take several hops (DelaySeconds <= 900).
MAX_DELAY_SECONDS = 900
#: Characters of a receiver's answer kept in an attempt's error.
MAX_ERROR_CHARS = 200
_EVENT = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed", JobStatus.CANCELLED: "job.cancelled"}


@dataclass(frozen=True)
class Schedule:
    """When a failed attempt is tried again: the n-th retry after about first * 2**(n-1) seconds
    (at most `longest`), half of it fixed and half random ("equal jitter"), so receivers that fail
    together are not retried together and the waits still grow."""

    first_seconds: float = 5.0
    longest_seconds: float = 3600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds from the `attempt`-th attempt (1-based) to the next."""
        ceiling = min(self.longest_seconds, self.first_seconds * 2 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Attempt:
    """What one attempt got: the receiver's status, or the error that stopped it."""

    status_code: int | None
    error: str | None
    retryable: bool

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def envelope(job: Job, view: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks body of a job's end."""
    return {"type": _EVENT[job.status], "timestamp": isoformat(job.finished_at), "data": view}


def judge(answer: Answer) -> Attempt:
    """A receiver's answer as an attempt: 2xx delivered; 5xx, 429 and no answer retried; others not."""
    if answer.status is None:
        return Attempt(None, answer.error, retryable=True)
    if 200 <= answer.status < 300:
        return Attempt(answer.status, None, retryable=False)
    text = answer.body.decode("utf-8", "replace").strip()
    text = "".join(c if c.isprintable() else " " for c in text)[:MAX_ERROR_CHARS]
    what = f"HTTP {answer.status}" + (f": {text}" if text else "")
    if 300 <= answer.status < 400:
        what += " (redirects are not followed)"
    return Attempt(answer.status, what, retryable=answer.status >= 500 or answer.status == 429)


def webhook_id(job: Job) -> str:
    """The `webhook-id` of the job's current end: one per end, whatever the attempts."""
    ended = 0 if job.finished_at is None else int(as_utc(job.finished_at).timestamp() * 1000)
    return f"msg_{job.id}_{ended}"


class Deliverer:
    """Runs the delivery attempts the webhooks queue asks for."""

    def __init__(
        self,
        store: JobStore,
        queue: DeliveryQueue,
        secrets: signing.SigningSecrets,
        results: Results,
        settings: Settings,
        *,
        transport: Transport | None = None,
        resolver: guard.Resolver = guard.system_resolver,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        schedule: Schedule | None = None,
    ):
        self._store = store
        self._queue = queue
        self._secrets = secrets
        self._results = results
        self._settings = settings
        self._transport = transport or Transport()
        self._resolver = resolver
        self._clock = clock
        self._rng = rng or random.Random()
        self.schedule = schedule or Schedule()
        self._policy = guard.Policy.of(
            allow_http=settings.webhook_allow_http, allow_loopback=settings.webhook_allow_loopback
        )

    def handle_batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Deliver each record's attempt; the answer names the records SQS must deliver again."""
        failed = []
        for record in records:
            try:
                message = parse_delivery(record["body"])
            except (ValueError, KeyError):
                log.error("webhook record %s is not a delivery: dropped", record.get("messageId"))
                continue
            with observability.job_context(message.job_id):
                try:
                    self.deliver(message)
                except errors.DependencyUnavailable as exc:
                    log.warning("webhook of job %s: %s; SQS delivers it again", message.job_id, exc.message)
                    failed.append(record)
                except Exception:  # a bug must not take the batch's other records with it
                    log.exception("webhook of job %s: unexpected error; SQS delivers it again", message.job_id)
                    failed.append(record)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failed]}

    def deliver(self, message: DeliveryMessage) -> str:
        """Run the message's attempt if it is due and still the next; what happened: "delivered",
        "retrying", "failed", "deferred" (not due yet: sent on) or "dropped" (a needless copy)."""
        found = self._store.get_delivery(message.job_id)
        if found is None:
            log.info("webhook of job %s dropped: no such job (purged?)", message.job_id)
            return "dropped"
        job, state, attempts = found
        if state is None or not state.open or not job.status.terminal or message.attempt != len(attempts) + 1:
            log.info("webhook of job %s: attempt %d is not due (a copy): dropped", job.id, message.attempt)
            return "dropped"
        now = self._clock()
        if message.not_before_ms > now * 1000:
            wait = math.ceil(message.not_before_ms / 1000 - now)
            self._queue.send(message, delay_seconds=min(MAX_DELAY_SECONDS, wait))
            return "deferred"
        deadline = as_utc(job.finished_at or job.updated_at or job.created_at) + timedelta(
            seconds=self._settings.webhook_retry_seconds
        )
        at = datetime.fromtimestamp(now, UTC)
        if at > deadline:
            return self._give_up(job, attempts, at, reason="its retry window ended before this attempt")
        attempt = self._attempt(job, now)
        return self._record(job, attempts, attempt, at, deadline)

    # --- one attempt -----------------------------------------------------------------------------
    def _attempt(self, job: Job, now: float) -> Attempt:
        assert job.callback_url is not None  # an open webhook has its URL
        try:
            target = guard.target(job.callback_url, self._policy)
            addresses = guard.resolve(target, self._policy, self._resolver)
        except errors.InvalidRequest as exc:
            return Attempt(None, f"refused: {exc.message}", retryable=False)
        except guard.Refused as exc:
            log.warning("webhook of job %s refused: %s (%s)", job.id, exc, getattr(exc, "address", "?"))
            observability.count("WebhooksRefused")
            return Attempt(None, str(exc), retryable=False)
        except OSError as exc:
            return Attempt(None, f"the host does not resolve ({type(exc).__name__})", retryable=True)
        body = json.dumps(envelope(job, self._view(job)), separators=(",", ":"))
        msg_id = webhook_id(job)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "jobs-webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signing.sign(
                self._secrets.keys(job.owner), msg_id, datetime.fromtimestamp(now, UTC), body
            ),
        }
        answer = self._transport.post(
            target, addresses[0], body.encode(), headers, timeout=self._settings.webhook_timeout_seconds
        )
        return judge(answer)

    def _view(self, job: Job) -> dict[str, Any]:
        """The job's view as GET /jobs/{id} shows it; a result in S3 as a URL signed now."""
        from ..http import job_view  # the API's one JSON of a job
        from ..service import Answer

        url = self._results.url(job.result_key) if job.result_key else None
        return job_view(Answer(job.snapshot(), result_url=url))

    # --- its record ------------------------------------------------------------------------------
    def _record(
        self, job: Job, attempts: list[dict[str, Any]], attempt: Attempt, at: datetime, deadline: datetime
    ) -> str:
        n = len(attempts) + 1
        entry: dict[str, Any] = {
            "attempt": n,
            "at": isoformat(at),
            "statusCode": attempt.status_code,
            "error": attempt.error,
            "nextRetryAt": None,
        }
        next_at: datetime | None = at + timedelta(seconds=self.schedule.delay(n, self._rng))
        if attempt.delivered:
            state, outcome, next_at = CallbackState.DELIVERED, "delivered", None
        elif attempt.retryable and next_at is not None and next_at <= deadline:
            entry["nextRetryAt"] = isoformat(next_at)
            state, outcome = CallbackState.QUEUED, "retrying"
        else:
            state, outcome, next_at = CallbackState.FAILED, "failed", None
        if not self._store.record_delivery(
            job.id, made=n - 1, deliveries=[*attempts, entry], state=state, due_at=next_at
        ):
            log.info("webhook of job %s: attempt %d recorded by another delivery", job.id, n)
            return "dropped"
        extra = {"job_id": job.id, "attempt": n, "status_code": attempt.status_code, "error": attempt.error}
        if outcome == "delivered":
            log.info("webhook delivered", extra=extra)
            observability.count("WebhooksDelivered")
        elif outcome == "retrying":
            assert next_at is not None
            log.warning("webhook attempt failed; retrying", extra={**extra, "next_retry_at": entry["nextRetryAt"]})
            self._send_next(job, n + 1, next_at, at)
        else:
            why = "not retryable" if not attempt.retryable else "the next retry would fall after its retry window"
            log.warning(f"webhook delivery given up after {n} attempts: {why}", extra=extra)
            observability.count("WebhooksFailed")
        return outcome

    def _send_next(self, job: Job, attempt: int, next_at: datetime, at: datetime) -> None:
        wait = max(0, math.ceil((next_at - at).total_seconds()))
        message = DeliveryMessage(job.id, attempt=attempt, not_before_ms=int(next_at.timestamp() * 1000))
        try:
            self._queue.send(message, delay_seconds=min(MAX_DELAY_SECONDS, wait))
        except errors.QueueUnavailable:
            # The row says QUEUED and when: the sweeper sends it once it is WEBHOOK_LOST_SECONDS late.
            log.warning("webhook of job %s: next attempt not queued; the sweeper will", job.id, exc_info=True)

    def _give_up(self, job: Job, attempts: list[dict[str, Any]], at: datetime, *, reason: str) -> str:
        if self._store.record_delivery(
            job.id, made=len(attempts), deliveries=attempts, state=CallbackState.FAILED, due_at=None
        ):
            log.warning(
                f"webhook delivery given up after {len(attempts)} attempts: {reason}",
                extra={"job_id": job.id, "attempts": len(attempts)},
            )
            observability.count("WebhooksFailed")
        return "failed"
