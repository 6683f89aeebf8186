"""`AsyncClient`: the same API as `Client`, for asyncio (httpx.AsyncClient underneath)."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import _http, _plans
from ._plans import Call, Emit, Notify, Plan, Sleep
from .models import Batch, Delivery, Job, Limits, Page, Schedule, Submitted, Upload
from .retry import RetryPolicy

T = TypeVar("T")


class AsyncClient:
    """The jobs API for asyncio: every method of `Client`, awaited; `list` is an async iterator.
    Progress callbacks may be plain functions or coroutine functions."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.url, self._key = _http.settings(url, key)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def submit(
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
        """Submit a job (see Client.submit)."""
        return await self._run(
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

    async def submit_batch(
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
        return await self._run(
            _plans.submit_batch(
                jobs,
                then=then,
                then_on_failure=then_on_failure,
                callback_url=callback_url,
                idempotency_key=idempotency_key,
            )
        )

    async def batch(self, batch: str | Batch, *, cursor: str | None = None, limit: int | None = None) -> Batch:
        """The batch now: status, counts by status, mean progress, then, a page of member ids."""
        return await self._run(_plans.get_batch(batch, cursor=cursor, limit=limit))

    async def cancel_batch(self, batch: str | Batch) -> Batch:
        """Cancel every unfinished job of the batch, its then first."""
        return await self._run(_plans.cancel_batch(batch))

    async def wait_batch(
        self, batch: str | Batch, *, on_progress: Callable[[Batch], Any] | None = None, timeout: float | None = None
    ) -> Batch:
        """Poll the batch (one request a cycle, paced by Retry-After) until every job has ended."""
        return await self._run(_plans.wait_batch(batch, on_progress=on_progress, timeout=timeout))

    async def get(self, job: str | Job) -> Job:
        """The job now (see Client.get)."""
        return await self._run(_plans.get(job))

    async def get_many(self, jobs: Iterable[str | Job]) -> list[Job]:
        """The caller's jobs among these (see Client.get_many)."""
        return (await self._run(_plans.get_many(jobs))).jobs

    async def wait(
        self, job: str | Job, *, on_progress: Callable[[Job], Any] | None = None, timeout: float | None = None
    ) -> Job:
        """Poll until the job ends, paced by Retry-After (see Client.wait)."""
        return await self._run(_plans.wait(job, on_progress=on_progress, timeout=timeout))

    async def wait_all(
        self,
        jobs: Iterable[str | Job],
        *,
        on_progress: Callable[[list[Job]], Any] | None = None,
        timeout: float | None = None,
    ) -> list[Job]:
        """Poll all the jobs in one request per cycle until all have ended (see Client.wait_all)."""
        return await self._run(_plans.wait_all(jobs, on_progress=on_progress, timeout=timeout))

    async def cancel(self, job: str | Job) -> Job:
        """Cancel the job (see Client.cancel)."""
        return await self._run(_plans.cancel(job))

    async def retry_job(self, job: str | Job, *, from_start: bool = False) -> Job:
        """Run a FAILED or CANCELLED job again (see Client.retry_job)."""
        return await self._run(_plans.retry(job, from_start=from_start))

    async def cancel_many(
        self, *, status: str | None = None, type: str | None = None, batch_id: str | None = None
    ) -> int:
        """Cancel the matching unfinished jobs (see Client.cancel_many)."""
        return await self._run(_plans.cancel_many(status=status, job_type=type, batch_id=batch_id))

    def list(
        self, *, status: str | None = None, type: str | None = None, page_size: int = 100, limit: int | None = None
    ) -> AsyncIterator[Job]:
        """The caller's jobs, newest first, page after page: `async for job in client.list(): ...`."""
        return self._iterate(_plans.iterate(status=status, job_type=type, page_size=page_size, limit=limit))

    async def page(
        self, *, status: str | None = None, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        """One page of the caller's jobs (see Client.page)."""
        return await self._run(_plans.page(status=status, job_type=type, limit=limit, cursor=cursor))

    async def result(self, job: str | Job) -> Any:
        """A COMPLETED job's result, inline or from S3 (see Client.result)."""
        return await self._run(_plans.result(job))

    # --- schedules -------------------------------------------------------------------------------
    async def create_schedule(
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
        return await self._run(_plans.create_schedule(cron, job, timezone=timezone, overlap=overlap, paused=paused))

    async def get_schedule(self, schedule: str | Schedule) -> Schedule:
        """The schedule now: its next and last occurrence, its last job, what it skipped."""
        return await self._run(_plans.get_schedule(schedule))

    def schedules(self, *, page_size: int = 100) -> AsyncIterator[Schedule]:
        """The caller's schedules, newest first, fetched a page at a time as the iteration goes."""
        return self._iterate(_plans.iterate_schedules(page_size=page_size))

    async def update_schedule(
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
        return await self._run(plan)

    async def pause_schedule(self, schedule: str | Schedule) -> Schedule:
        return await self.update_schedule(schedule, paused=True)

    async def resume_schedule(self, schedule: str | Schedule) -> Schedule:
        return await self.update_schedule(schedule, paused=False)

    async def delete_schedule(self, schedule: str | Schedule) -> None:
        """Delete the schedule (its next job, made ahead and not yet due, is cancelled)."""
        await self._run(_plans.delete_schedule(schedule))

    # --- the rest --------------------------------------------------------------------------------
    async def upload(self, path: str | os.PathLike[str], *, content_type: str | None = None) -> Upload:
        """Upload a file under the caller's input prefix (see Client.upload)."""
        return await self._run(_plans.upload(path, content_type=content_type))

    async def deliveries(self, job: str | Job) -> builtins.list[Delivery]:
        """The attempts to deliver the job's completion webhook (status, error, next retry), oldest first."""
        return await self._run(_plans.deliveries(job))

    async def webhook_secret(self) -> str:
        """The caller's webhook signing secret (`whsec_...`): give it to verify_webhook."""
        return await self._run(_plans.webhook_secret())

    async def limits(self) -> Limits:
        """The caller's plan, limits and use (see Client.limits)."""
        return await self._run(_plans.limits())

    async def request(
        self, method: str, path: str, *, params: Any = None, json: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Any route of the API (see Client.request)."""
        return await self._run(_plans.request(method, path, params=params, json=json, headers=headers))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- performing the plans --------------------------------------------------------------------
    async def _run(self, plan: Plan[T]) -> T:
        reply = None
        while True:
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value
            reply = await self._perform(step)

    async def _iterate(self, plan: Plan[Any]) -> AsyncIterator[Any]:
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
                reply = await self._perform(step)

    async def _perform(self, step: Any) -> Any:
        if isinstance(step, Call):
            return await self._send(step)
        if isinstance(step, Sleep):
            await self._sleep(step.seconds)
        elif isinstance(step, Notify):
            outcome = step.callback(step.value)
            if inspect.isawaitable(outcome):
                await outcome
        return None

    async def _send(self, call: Call) -> httpx.Response:
        safe = _http.safe(call, self.retry)
        attempt = 0
        while True:
            try:
                response = await self._attempt(call)
            except httpx.TransportError as exc:
                wait = self.retry.after_error(attempt, safe=safe)
                if wait is None:
                    raise _http.unreachable(call, self.url, exc) from exc
            else:
                advice = _plans._retry_after(response)
                wait = self.retry.after_status(response.status_code, attempt, safe=safe, retry_after=advice)
                if wait is None:
                    return _http.outcome(call, response)
            await self._sleep(wait)
            attempt += 1

    async def _attempt(self, call: Call) -> httpx.Response:
        if call.file is None:
            return await self._http.request(**_http.request_args(call, self.url, self._key, None))
        with open(call.file, "rb") as file:  # httpx reads a plain file in its async multipart stream
            return await self._http.request(**_http.request_args(call, self.url, self._key, file))
