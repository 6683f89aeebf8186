"""Each operation of the client once, for both `Client` and `AsyncClient`.

An operation is a generator (a "plan") that yields what it needs done (`Call` a route and receive
its response, `Sleep`, `Notify` a callback, `Emit` an item of an iterator) and returns its answer.
`Client` performs the steps with blocking I/O, `AsyncClient` with await: the API's rules (paths,
bodies, what a response means, pacing by Retry-After) live here alone, with no I/O.
"""

from __future__ import annotations

import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from . import errors
from .models import Batch, Delivery, Job, Limits, Page, Schedule, Submitted, Upload
from .retry import parse_retry_after

T = TypeVar("T")
#: Most ids one `GET /jobs?ids=` may name (the API's limit).
MAX_IDS = 100
#: Seconds between polls when the API gives no Retry-After.
DEFAULT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Call:
    """One HTTP request: to the API (`path`), or to an absolute `url` with no API key (S3)."""

    method: str
    path: str = ""
    url: str | None = None
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    #: Statuses that are an answer, not an error.
    ok: tuple[int, ...] = (200,)
    #: May be repeated after a transient failure even though the method alone would not say so.
    repeatable: bool = False
    #: A presigned S3 POST: these form fields, then the file at this path as the field `file`.
    form: dict[str, str] | None = None
    file: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Notify:
    """Call `callback(value)` (awaited by AsyncClient when it returns an awaitable)."""

    callback: Callable[[Any], Any]
    value: Any


@dataclass(frozen=True)
class Emit:
    """An item of an iterating operation (`list`)."""

    value: Any


Step = Call | Sleep | Notify | Emit
Plan = Generator[Step, Any, T]


def job_id(job: str | Job) -> str:
    return job.id if isinstance(job, Job) else job


def _path(job: str | Job, suffix: str = "") -> str:
    return f"/jobs/{quote(job_id(job), safe='')}{suffix}"


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _job(response: httpx.Response) -> Job:
    return Job.from_json(response.json(), retry_after=_retry_after(response))


def submit(
    job_type: str,
    payload: dict[str, Any] | None,
    *,
    max_attempts: int | None,
    timeout_seconds: int | None,
    idempotency_key: str | None,
    run_at: datetime | str | None = None,
    delay_seconds: int | None = None,
    callback_url: str | None = None,
    priority: str | None = None,
    depends_on: Iterable[str | Job] | None = None,
) -> Plan[Job]:
    body: dict[str, Any] = {"type": job_type, "payload": payload or {}}
    if depends_on is not None:
        body["dependsOn"] = [job_id(job) for job in depends_on]
    if max_attempts is not None:
        body["maxAttempts"] = max_attempts
    if timeout_seconds is not None:
        body["timeoutSeconds"] = timeout_seconds
    if run_at is not None:  # an aware datetime, or RFC 3339 text as it is
        body["runAt"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
    if delay_seconds is not None:
        body["delaySeconds"] = delay_seconds
    if callback_url is not None:
        body["callbackUrl"] = callback_url
    if priority is not None:  # "high" or "normal" (the server's default)
        body["priority"] = priority
    # A key of its own unless given: every retry of this submission then returns the same one job.
    key = idempotency_key or f"jobs-client-{uuid.uuid4()}"
    response = yield Call("POST", "/jobs", json=body, headers={"Idempotency-Key": key}, ok=(202,))
    return _job(response)


def submit_batch(
    jobs: Iterable[dict[str, Any]],
    *,
    then: dict[str, Any] | None,
    then_on_failure: str | None,
    callback_url: str | None,
    idempotency_key: str | None,
) -> Plan[Submitted]:
    body: dict[str, Any] = {"jobs": list(jobs)}
    if then is not None:
        body["then"] = then
    if then_on_failure is not None:
        body["thenOnFailure"] = then_on_failure
    if callback_url is not None:
        body["callbackUrl"] = callback_url
    key = idempotency_key or f"jobs-client-{uuid.uuid4()}"
    reply = (yield Call("POST", "/batches", json=body, headers={"Idempotency-Key": key}, ok=(202,))).json()
    return Submitted(reply["batchId"], reply["jobIds"], reply.get("thenJobId"))


def _batch(response: httpx.Response) -> Batch:
    return Batch.from_json(response.json(), retry_after=_retry_after(response))


def _batch_path(batch: str | Batch) -> str:
    return f"/batches/{quote(batch.id if isinstance(batch, Batch) else batch, safe='')}"


def get_batch(batch: str | Batch, *, cursor: str | None = None, limit: int | None = None) -> Plan[Batch]:
    params = {k: v for k, v in (("cursor", cursor), ("limit", limit)) if v is not None}
    return _batch((yield Call("GET", _batch_path(batch), params=params or None)))


def cancel_batch(batch: str | Batch) -> Plan[Batch]:
    return _batch((yield Call("DELETE", _batch_path(batch))))


def wait_batch(batch: str | Batch, *, on_progress: Callable[[Batch], Any] | None, timeout: float | None) -> Plan[Batch]:
    """Poll the batch, never sooner than its Retry-After, until every job has ended."""
    first = batch if isinstance(batch, Batch) else (yield from get_batch(batch))
    return (yield from _poll(first, get_batch, on_progress=on_progress, timeout=timeout, what="batch"))


def get(job: str | Job) -> Plan[Job]:
    return _job((yield Call("GET", _path(job))))


def cancel(job: str | Job) -> Plan[Job]:
    return _job((yield Call("DELETE", _path(job), ok=(200, 202))))


def retry(job: str | Job, *, from_start: bool) -> Plan[Job]:
    """Run a FAILED or CANCELLED job again (POST /jobs/{id}/retry); 409 JobNotRetryable otherwise."""
    body = {"fromStart": True} if from_start else None
    return _job((yield Call("POST", _path(job, "/retry"), json=body, ok=(202,))))


def cancel_many(*, status: str | None, job_type: str | None, batch_id: str | None = None) -> Plan[int]:
    """Cancel the caller's unfinished jobs that match (POST /jobs/cancel), following the cursor until
    nothing more matches; how many were cancelled or asked to stop. Repeating a call is harmless."""
    wanted = {k: v for k, v in (("status", status), ("type", job_type), ("batchId", batch_id)) if v}
    total, cursor = 0, None
    while True:
        body = wanted if cursor is None else {**wanted, "cursor": cursor}
        answer = (yield Call("POST", "/jobs/cancel", json=body, repeatable=True)).json()
        total += answer["cancelled"]
        cursor = answer["nextCursor"]
        if cursor is None:
            return total


def get_many(jobs: Iterable[str | Job]) -> Plan[Page]:
    """The caller's jobs among these (any number: 100 per request), newest first; the answer's
    retry_after is the smallest of its active jobs'."""
    ids = list(dict.fromkeys(job_id(job) for job in jobs))
    found: list[Job] = []
    paces: list[float] = []
    for start in range(0, len(ids), MAX_IDS):
        chunk = ids[start : start + MAX_IDS]
        response = yield Call("GET", "/jobs", params={"ids": ",".join(chunk)})
        page = Page.from_json(response.json(), retry_after=_retry_after(response))
        found += page.jobs
        if page.retry_after is not None:
            paces.append(page.retry_after)
    found.sort(key=lambda job: job.id, reverse=True)
    return Page(found, None, min(paces, default=None))


def page(*, status: str | None, job_type: str | None, limit: int | None, cursor: str | None) -> Plan[Page]:
    params = {k: v for k, v in (("status", status), ("type", job_type), ("limit", limit), ("cursor", cursor)) if v}
    response = yield Call("GET", "/jobs", params=params)
    return Page.from_json(response.json())


def iterate(*, status: str | None, job_type: str | None, page_size: int, limit: int | None) -> Plan[None]:
    """Emit the caller's jobs, newest first, page after page, at most `limit` of them."""
    cursor, seen = None, 0
    while limit is None or seen < limit:
        size = page_size if limit is None else min(page_size, limit - seen)
        current = yield from page(status=status, job_type=job_type, limit=size, cursor=cursor)
        for job in current.jobs:
            yield Emit(job)
            seen += 1
        if current.next_cursor is None or not current.jobs:
            return
        cursor = current.next_cursor


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _pause(advice: float | None, deadline: float | None, what: str, last: Any) -> Sleep:
    seconds = max(advice or DEFAULT_POLL_SECONDS, 0.0)
    if deadline is not None and time.monotonic() + seconds > deadline:
        raise errors.WaitTimeout(f"{what} had not ended when the timeout came", last)
    return Sleep(seconds)


def wait(job: str | Job, *, on_progress: Callable[[Job], Any] | None, timeout: float | None) -> Plan[Job]:
    """Poll the job, never sooner than its Retry-After, until it ends; `on_progress` sees each view."""
    first = job if isinstance(job, Job) else (yield from get(job))
    return (yield from _poll(first, get, on_progress=on_progress, timeout=timeout, what="job"))


Polled = TypeVar("Polled", Job, Batch)


def _poll(
    current: Polled,
    fetch: Callable[[str], Plan[Polled]],
    *,
    on_progress: Callable[[Polled], Any] | None,
    timeout: float | None,
    what: str,
) -> Plan[Polled]:
    """Fetch `current` again, never sooner than its Retry-After, until it has ended."""
    deadline = _deadline(timeout)
    while True:
        if on_progress is not None:
            yield Notify(on_progress, current)
        if current.terminal:
            return current
        yield _pause(current.retry_after, deadline, f"{what} {current.id}", current)
        current = yield from fetch(current.id)


def wait_all(
    jobs: Iterable[str | Job], *, on_progress: Callable[[list[Job]], Any] | None, timeout: float | None
) -> Plan[list[Job]]:
    """Poll all the jobs with one request per cycle (per 100), paced by the smallest Retry-After,
    until every one has ended; in the order given. A job the API no longer knows is NotFound."""
    order = list(dict.fromkeys(job_id(job) for job in jobs))
    deadline = _deadline(timeout)
    latest: dict[str, Job] = {}
    pending = list(order)
    pace: float | None = None
    while True:
        if pending:
            answer = yield from get_many(pending)
            latest.update((job.id, job) for job in answer.jobs)
            missing = [i for i in pending if i not in {job.id for job in answer.jobs}]
            if missing:
                raise errors.NotFound(404, "JobNotFound", f"no job {missing[0]}")
            pace = answer.retry_after
        views = [latest[i] for i in order]
        if on_progress is not None:
            yield Notify(on_progress, views)
        pending = [job.id for job in views if not job.terminal]
        if not pending:
            return views
        yield _pause(pace, deadline, f"{len(pending)} of the jobs", views)


def result(job: str | Job) -> Plan[Any]:
    """A completed job's result: inline JSON, or the object behind the 303's presigned URL."""
    response = yield Call("GET", _path(job, "/result"), ok=(200, 303))
    if response.status_code == 200:
        return response.json()
    # The presigned URL carries its own authorisation: the API key is not sent there.
    stored = yield Call("GET", url=response.headers["Location"])
    return stored.json()


def upload(path: str | os.PathLike[str], *, content_type: str | None) -> Plan[Upload]:
    """POST /uploads for the file, then the file itself to S3 through the presigned POST."""
    name = os.path.basename(os.fspath(path))
    size = os.path.getsize(path)  # an unreadable path fails here, before any request
    content_type = content_type or mimetypes.guess_type(name)[0]
    body: dict[str, Any] = {"filename": name, "bytes": size}
    if content_type:
        body["contentType"] = content_type
    # POST /uploads only signs a policy (no effect to repeat): safe to retry like a GET.
    answer = yield Call("POST", "/uploads", json=body, ok=(201,), repeatable=True)
    data = answer.json()
    # The same key on every attempt: repeating the upload replaces the same object.
    yield Call(
        "POST",
        url=data["uploadUrl"],
        form=data["fields"],
        file=os.fspath(path),
        content_type=content_type or "application/octet-stream",
        ok=(200, 201, 204),
        repeatable=True,
    )
    return Upload.from_json(data)


def deliveries(job: str | Job) -> Plan[list[Delivery]]:
    """The attempts to deliver the job's completion webhook, oldest first."""
    response = yield Call("GET", _path(job, "/deliveries"))
    return [Delivery.from_json(item) for item in response.json()["deliveries"]]


def webhook_secret() -> Plan[str]:
    """The caller's signing secret (`whsec_...`), for verify_webhook."""
    return (yield Call("GET", "/webhook-secret")).json()["secret"]


def limits() -> Plan[Limits]:
    return Limits.from_json((yield Call("GET", "/limits")).json())


def schedule_id(schedule: str | Schedule) -> str:
    return schedule.id if isinstance(schedule, Schedule) else schedule


def _schedule_path(schedule: str | Schedule) -> str:
    return f"/schedules/{quote(schedule_id(schedule), safe='')}"


def _schedule_body(
    *, cron: str | None, timezone: str | None, job: dict[str, Any] | None, overlap: str | None, paused: bool | None
) -> dict[str, Any]:
    fields = (("cron", cron), ("timezone", timezone), ("job", job), ("overlap", overlap), ("paused", paused))
    return {name: value for name, value in fields if value is not None}


def create_schedule(
    cron: str, job: dict[str, Any], *, timezone: str | None, overlap: str | None, paused: bool | None
) -> Plan[Schedule]:
    """POST /schedules. Not retried after a transient failure: a repeat would make a second schedule."""
    body = _schedule_body(cron=cron, timezone=timezone, job=job, overlap=overlap, paused=paused)
    return Schedule.from_json((yield Call("POST", "/schedules", json=body, ok=(201,))).json())


def get_schedule(schedule: str | Schedule) -> Plan[Schedule]:
    return Schedule.from_json((yield Call("GET", _schedule_path(schedule))).json())


def update_schedule(schedule: str | Schedule, **fields: Any) -> Plan[Schedule]:
    """PATCH /schedules/{id}: it sets fields, so a repeat changes nothing more (safe to retry)."""
    body = _schedule_body(**fields)
    response = yield Call("PATCH", _schedule_path(schedule), json=body, repeatable=True)
    return Schedule.from_json(response.json())


def delete_schedule(schedule: str | Schedule) -> Plan[None]:
    yield Call("DELETE", _schedule_path(schedule), ok=(204,))


def iterate_schedules(*, page_size: int) -> Plan[None]:
    """Emit the caller's schedules, newest first, page after page."""
    cursor = None
    while True:
        params = {"limit": page_size, **({"cursor": cursor} if cursor else {})}
        data = (yield Call("GET", "/schedules", params=params)).json()
        for item in data["schedules"]:
            yield Emit(Schedule.from_json(item))
        cursor = data["nextCursor"]
        if cursor is None or not data["schedules"]:
            return


def request(method: str, path: str, *, params: Any, json: Any, headers: dict[str, str] | None) -> Plan[Any]:
    """Any route: its JSON answer (None for an empty body); errors as for the others."""
    response = yield Call(method.upper(), path, params=params, json=json, headers=headers, ok=tuple(range(200, 300)))
    return response.json() if response.content else None
