"""`Client`: the jobs API with blocking calls (httpx.Client underneath, one connection pool)."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import _http, _plans
from ._plans import Call, Emit, Notify, Plan, Sleep
from .models import Batch, Delivery, Job, Limits, Page, Schedule, Submitted, Upload
from .retry import RetryPolicy

T = TypeVar("T")


class Client:
    """The jobs API. `url` and `key` default to JOBS_API_URL and JOBS_API_KEY.

    Every method raises a `JobsError`: an `ApiError` subclass with the API's `code` and `message`,
    or `TransportError`. Retries follow `retry` (see jobs_client.retry).
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url, self._key = _http.settings(url, key)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        # Redirects are never followed: a 303 to a presigned URL must not carry the API key.
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    # --- jobs ------------------------------------------------------------------------------------
    def submit(
        self,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | str | None = None,
        delay_seconds: int | None = None,
        callback_url: str | None = None,
        priority: str | None = None,
        depends_on: Iterable[str | Job] | None = None,
    ) -> Job:
        """Submit a job; with an Idempotency-Key (one is made unless given), so retries are safe.
        `run_at` (an aware datetime or RFC 3339) or `delay_seconds` schedule it for later;
        `priority` "high" puts it on the high-priority queue, ahead of any backlog of normal jobs."""
        return self._run(
            _plans.submit(
                job_type,
                payload,
                max_attempts=max_attempts,
                timeout_seconds=timeout_seconds,
                idempotency_key=idempotency_key,
                run_at=run_at,
                delay_seconds=delay_seconds,
                callback_url=callback_url,
                priority=priority,
                depends_on=depends_on,
            )
        )

    def submit_batch(
        self,
        jobs: Iterable[dict[str, Any]],
        *,
        then: dict[str, Any] | None = None,
        then_on_failure: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Submit up to 500 job specs (`{"type", "payload", ...}`, `dependsOn` may name an earlier one's
        index) at once, all or none, with an optional fan-in `then` job; with an Idempotency-Key."""
        return self._run(
            _plans.submit_batch(
                jobs,
                then=then,
                then_on_failure=then_on_failure,
                callback_url=callback_url,
                idempotency_key=idempotency_key,
            )
        )

    def batch(self, batch: str | Batch, *, cursor: str | None = None, limit: int | None = None) -> Batch:
        """The batch now: status, counts by status, mean progress, then, a page of member ids."""
        return self._run(_plans.get_batch(batch, cursor=cursor, limit=limit))

    def cancel_batch(self, batch: str | Batch) -> Batch:
        """Cancel every unfinished job of the batch, its then first."""
        return self._run(_plans.cancel_batch(batch))

    def wait_batch(
        self, batch: str | Batch, *, on_progress: Callable[[Batch], Any] | None = None, timeout: float | None = None
    ) -> Batch:
        """Poll the batch (one request a cycle, paced by Retry-After) until every job has ended."""
        return self._run(_plans.wait_batch(batch, on_progress=on_progress, timeout=timeout))

    def get(self, job: str | Job) -> Job:
        """The job now (with its result once COMPLETED, and the API's Retry-After)."""
        return self._run(_plans.get(job))

    def get_many(self, jobs: Iterable[str | Job]) -> list[Job]:
        """The caller's jobs among these, newest first, in one request per 100 (GET /jobs?ids=);
        unknown ids and other clients' are simply absent. Items carry no result."""
        return self._run(_plans.get_many(jobs)).jobs

    def wait(
        self, job: str | Job, *, on_progress: Callable[[Job], Any] | None = None, timeout: float | None = None
    ) -> Job:
        """Poll until the job ends, never sooner than the API's Retry-After; the final view.
        `on_progress(job)` sees every view, the first and the last included. WaitTimeout after `timeout` s."""
        return self._run(_plans.wait(job, on_progress=on_progress, timeout=timeout))

    def wait_all(
        self,
        jobs: Iterable[str | Job],
        *,
        on_progress: Callable[[list[Job]], Any] | None = None,
        timeout: float | None = None,
    ) -> list[Job]:
        """Poll all the jobs, one request per cycle (per 100 jobs), paced by the smallest Retry-After,
        until every one has ended; their final views (without results), in the order given."""
        return self._run(_plans.wait_all(jobs, on_progress=on_progress, timeout=timeout))

    def cancel(self, job: str | Job) -> Job:
        """Cancel: at once if PENDING (CANCELLED), at the next chunk if RUNNING (cancel_requested)."""
        return self._run(_plans.cancel(job))

    def retry_job(self, job: str | Job, *, from_start: bool = False) -> Job:
        """Run a FAILED or CANCELLED job again under its id, now: from its last checkpoint, or every
        chunk again with `from_start`; the PENDING job (its old error as `previous_error`). (`retry`
        is the client's RetryPolicy.)"""
        return self._run(_plans.retry(job, from_start=from_start))

    def cancel_many(self, *, status: str | None = None, type: str | None = None, batch_id: str | None = None) -> int:
        """Cancel every unfinished job of the caller with this status, type and/or batch (at least one):
        unstarted ones at once, RUNNING ones at their next chunk; how many."""
        return self._run(_plans.cancel_many(status=status, job_type=type, batch_id=batch_id))

    def list(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """The caller's jobs, newest first, fetched a page at a time as the iteration goes; at most `limit`."""
        return self._iterate(_plans.iterate(status=status, job_type=type, page_size=page_size, limit=limit))

    def page(
        self, *, status: str | None = None, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        """One page of the caller's jobs (`next_cursor` for the next)."""
        return self._run(_plans.page(status=status, job_type=type, limit=limit, cursor=cursor))

    def result(self, job: str | Job) -> Any:
        """A COMPLETED job's result, inline or from S3 (the API's 303 followed, without the key)."""
        return self._run(_plans.result(job))

    # --- schedules -------------------------------------------------------------------------------
    def create_schedule(
        self,
        cron: str,
        job: dict[str, Any],
        *,
        timezone: str | None = None,
        overlap: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """A recurring schedule: `job` ({"type", "payload", ...}) made at each occurrence of the 5-field
        `cron` in `timezone` (IANA; the API's default is UTC). Not retried: a repeat would make a second."""
        return self._run(_plans.create_schedule(cron, job, timezone=timezone, overlap=overlap, paused=paused))

    def get_schedule(self, schedule: str | Schedule) -> Schedule:
        """The schedule now: its next and last occurrence, its last job, what it skipped."""
        return self._run(_plans.get_schedule(schedule))

    def schedules(self, *, page_size: int = 100) -> Iterator[Schedule]:
        """The caller's schedules, newest first, fetched a page at a time as the iteration goes."""
        return self._iterate(_plans.iterate_schedules(page_size=page_size))

    def update_schedule(
        self,
        schedule: str | Schedule,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        job: dict[str, Any] | None = None,
        overlap: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """Change the fields given; `paused=True` pauses (no jobs), `paused=False` resumes (the latest
        occurrence missed meanwhile runs once)."""
        plan = _plans.update_schedule(schedule, cron=cron, timezone=timezone, job=job, overlap=overlap, paused=paused)
        return self._run(plan)

    def pause_schedule(self, schedule: str | Schedule) -> Schedule:
        return self.update_schedule(schedule, paused=True)

    def resume_schedule(self, schedule: str | Schedule) -> Schedule:
        return self.update_schedule(schedule, paused=False)

    def delete_schedule(self, schedule: str | Schedule) -> None:
        """Delete the schedule (its next job, made ahead and not yet due, is cancelled)."""
        self._run(_plans.delete_schedule(schedule))

    # --- the rest --------------------------------------------------------------------------------
    def upload(self, path: str | os.PathLike[str], *, content_type: str | None = None) -> Upload:
        """Upload a file under the caller's input prefix; its bucket and key go in a payload."""
        return self._run(_plans.upload(path, content_type=content_type))

    def deliveries(self, job: str | Job) -> builtins.list[Delivery]:
        """The attempts to deliver the job's completion webhook (status, error, next retry), oldest first."""
        return self._run(_plans.deliveries(job))

    def webhook_secret(self) -> str:
        """The caller's webhook signing secret (`whsec_...`): give it to verify_webhook."""
        return self._run(_plans.webhook_secret())

    def limits(self) -> Limits:
        """The caller's plan, its job limits and its unfinished jobs."""
        return self._run(_plans.limits())

    def request(
        self, method: str, path: str, *, params: Any = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Any route of the API: its JSON answer, with the same errors and retry rules."""
        return self._run(_plans.request(method, path, params=params, json=json, headers=headers))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- performing the plans --------------------------------------------------------------------
    def _run(self, plan: Plan[T]) -> T:
        reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._perform(step)

    def _iterate(self, plan: Plan[Any]) -> Iterator[Any]:
        reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration:
                return
            if isinstance(step, Emit):
                reply = None
                yield step.value
            else:
                reply = self._perform(step)

    def _perform(self, step: Any) -> Any:
        if isinstance(step, Call):
            return self._send(step)
        if isinstance(step, Sleep):
            self._sleep(step.seconds)
        elif isinstance(step, Notify):
            step.callback(step.value)
        return None

    def _send(self, call: Call) -> httpx.Response:
        safe = _http.safe(call, self.retry)
        attempt = 0
        while True:
            try:
                response = self._attempt(call)
            except httpx.TransportError as exc:
                wait = self.retry.after_error(attempt, safe=safe)
                if wait is None:
                    raise _http.unreachable(call, self.url, exc) from exc
            else:
                advice = _plans._retry_after(response)
                wait = self.retry.after_status(response.status_code, attempt, safe=safe, retry_after=advice)
                if wait is None:
                    return _http.outcome(call, response)
            self._sleep(wait)
            attempt += 1

    def _attempt(self, call: Call) -> httpx.Response:
        if call.file is None:
            return self._http.request(**_http.request_args(call, self.url, self._key, None))
        with open(call.file, "rb") as file:  # opened per attempt: a retry sends the whole file again
            return self._http.request(**_http.request_args(call, self.url, self._key, file))
