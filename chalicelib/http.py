"""HTTP edges of the routes: who is calling, what they sent, and our errors as HTTP answers.

Every error leaves the API as JSON `{"code": "...", "message": "..."}`: ours through `api`, and
Chalice's own (405, 415, 500) through `normalise_errors`, the app's HTTP middleware.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalice import Response

from . import dashboard, errors
from .models import isoformat
from .observability import logger as log

if TYPE_CHECKING:  # the shapes of the answers: their modules load with the services that make them
    from .batches import BatchView, Submitted
    from .bulk import Cancelled
    from .schedule_store import Schedule
    from .schedules import SchedulePage
    from .service import Answer, JobResult, Page, Usage
    from .tenants import Tenants
    from .uploads import Upload

#: HTTP status of each error class; the first match in this order wins.
STATUS = (
    (errors.MissingApiKey, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.ActiveJobLimit, 429),
    (errors.ClientError, 400),
    (errors.DependencyUnavailable, 503),
    (errors.Misconfigured, 503),
)
#: A batch's body may be this many times MAX_BODY_BYTES (500 job specs in one request).
BATCH_BODY_FACTOR = 4
#: Seconds between useful polls of an active batch.
BATCH_RETRY_AFTER = 1
#: Seconds a client should wait after a 503.
UNAVAILABLE_RETRY_AFTER = 5
#: Seconds a client at its maxActiveJobs waits before submitting again (the 429's Retry-After).
ACTIVE_LIMIT_RETRY_AFTER = 5
#: Inside a Lambda function (set by the runtime), where only API Gateway may say who calls.
ON_AWS = "AWS_LAMBDA_FUNCTION_NAME" in os.environ

_API_KEY = re.compile(r"[\x21-\x7e]{1,128}")
#: Printable ASCII, 1-255 characters (the OpenAPI document publishes this pattern).
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
#: The keys of schedules' occurrence jobs (schedules.occurrence_key): never a client's, so none can
#: take an occurrence's key before the sweeper does.
RESERVED_KEY_PREFIX = "schedule:"


def error_response(exc: errors.JobsError) -> Response:
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    retry = {503: UNAVAILABLE_RETRY_AFTER, 429: ACTIVE_LIMIT_RETRY_AFTER}.get(status)
    headers: dict[str, str | list[str]] = {} if retry is None else {"Retry-After": str(retry)}
    if status == 503:
        log.warning("answering 503: %s", exc.message)
        message = "a service the API depends on is unavailable; try again shortly"
    else:
        message = errors.sanitise(exc.message)
    return Response(body={"code": exc.code, "message": message, **exc.details}, status_code=status, headers=headers)


def api(view: Callable[..., Response]) -> Callable[..., Response]:
    """Route decorator: our errors become their HTTP answers."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except errors.JobsError as exc:
            return error_response(exc)

    return wrapper


def normalise_errors(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """HTTP middleware: Chalice's `{"Code", "Message"}` errors in our `{"code", "message"}` shape."""
    response = get_response(event)
    body = response.body
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = "InternalError" if response.status_code >= 500 else body["Code"]
        response.body = {"code": code, "message": body["Message"]}
    return response


def owner(request: Any, tenants: Tenants, *, on_aws: bool = ON_AWS) -> str:
    """The caller: the client whose API key API Gateway resolved (tenants.py), or, with no tenants
    document, the key id itself; where no gateway runs (tests, a bare local run) the `x-api-key`
    header stands in for the key id. That stand-in is refused on AWS, where a route without
    `api_key_required` would otherwise let any caller name any owner."""
    identity = (request.context or {}).get("identity") or {}
    key_id = identity.get("apiKeyId")
    if key_id is None and not on_aws:
        key_id = request.headers.get("x-api-key")
    if not key_id:
        raise errors.MissingApiKey("an API key is required (header x-api-key)")
    if not _API_KEY.fullmatch(key_id):
        raise errors.MissingApiKey("the API key is not valid")
    caller = key_id
    if tenants.configured:
        client = tenants.client_of(key_id)
        if client is None:
            raise errors.MissingApiKey("the API key is not one of this deployment's clients")
        caller = client
    log.thread_safe_append_keys(owner=caller)
    return caller


def json_body(request: Any, *, max_bytes: int, required: bool = True) -> Any:
    """The request's JSON body (None for none, where it is not `required`); InvalidJson or
    PayloadTooLarge when it is not usable."""
    raw = request.raw_body or b""
    if len(raw) > max_bytes:
        raise errors.PayloadTooLarge(f"the body is over {max_bytes} bytes")
    if not raw.strip():
        if not required:
            return None
        raise errors.InvalidJson("a JSON body is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidJson(f"the body is not valid JSON: {exc}"[:300]) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def query(request: Any, *allowed: str) -> dict[str, str]:
    """The query parameters, when all are known (a misspelt filter must not silently list everything)."""
    params = request.query_params or {}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise errors.InvalidRequest(f"unknown query parameters: {', '.join(unknown)[:200]}")
    return {name: params[name] for name in allowed if name in params}


def idempotency_key(request: Any) -> str | None:
    """The `Idempotency-Key` header, checked, or None."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise errors.InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise errors.InvalidRequest(
            f"Idempotency-Key must not start with {RESERVED_KEY_PREFIX!r}: schedules' jobs use it"
        )
    return key


def job_view(answer: Answer, *, with_result: bool = True) -> dict[str, Any]:
    """The API's JSON of a job, as `GET /jobs/{id}` answers it (the list leaves out `result`)."""
    job = answer.job
    view = {
        "jobId": job.id,
        "type": job.type,
        "status": job.status.value,
        "progress": job.progress,
        "progressDetail": job.progress_detail,
        # The job type's and the worker's texts may quote a driver: sanitised (errors.sanitise).
        "message": errors.sanitise(job.message),
        "etaSeconds": job.eta_seconds,
        "updatedAt": isoformat(job.updated_at),
        "result": job.result,
        "resultUrl": answer.result_url,
        "resultBytes": job.result_bytes,
        "error": errors.sanitise(job.error),
        "previousError": errors.sanitise(job.previous_error),
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "cancelRequested": job.cancel_requested,
        "createdAt": isoformat(job.created_at),
        "runAt": isoformat(job.run_at),
        "priority": job.priority.value,
        "batchId": job.batch_id,
        "dependsOn": job.depends_on,
        "startedAt": isoformat(job.started_at),
        "finishedAt": isoformat(job.finished_at),
        "stalled": answer.stalled,
    }
    if not with_result:
        del view["result"], view["resultUrl"]
    return view


def job_response(answer: Answer, *, status: int = 200, location: bool = False) -> Response:
    """A job's view as a response, with Location and Retry-After where they apply."""
    headers: dict[str, str | list[str]] = {}
    if location:
        headers["Location"] = f"/jobs/{answer.job.id}"
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body=job_view(answer), status_code=status, headers=headers)


def batch_submitted(submitted: Submitted) -> Response:
    """`POST /batches`: 202 with the batch's id, its jobs' ids in the order given, its `then` job's."""
    headers: dict[str, str | list[str]] = {"Location": f"/batches/{submitted.batch_id}"}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    body = {"batchId": submitted.batch_id, "jobIds": submitted.job_ids, "thenJobId": submitted.then_job_id}
    return Response(body=body, status_code=202, headers=headers)


def batch_response(view: BatchView) -> Response:
    """A batch's view; while it is active, Retry-After paces the polls."""
    headers: dict[str, str | list[str]] = {} if view.status.terminal else {"Retry-After": str(BATCH_RETRY_AFTER)}
    return Response(body=view.body(), status_code=200, headers=headers)


def result_response(found: JobResult) -> Response:
    """`GET /jobs/{id}/result`: the JSON itself (200), or a 303 to the presigned URL of its object."""
    if found.url is not None:
        # The URL expires in minutes: a cached redirect would outlive it.
        return Response(body="", status_code=303, headers={"Location": found.url, "Cache-Control": "no-store"})
    # Encoded here: Chalice would send a bare string result as text, not as JSON.
    body = json.dumps(found.value, separators=(",", ":"))
    return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})


def page_response(page: Page) -> Response:
    """A page of jobs as `GET /jobs` answers it; a list by ids carries the smallest Retry-After of its
    active jobs, so one poll of many jobs is paced by the quickest of them."""
    body = {"jobs": [job_view(answer, with_result=False) for answer in page.answers], "nextCursor": page.next_cursor}
    headers: dict[str, str | list[str]] = {}
    if page.retry_after is not None:
        headers["Retry-After"] = str(page.retry_after)
    return Response(body=body, status_code=200, headers=headers)


def cancelled_response(done: Cancelled) -> Response:
    """`POST /jobs/cancel`: `200 {"cancelled": n, "nextCursor"}` (null: nothing more matched)."""
    return Response(body={"cancelled": done.cancelled, "nextCursor": done.next_cursor}, status_code=200)


def upload_response(upload: Upload) -> Response:
    """`201` with where to upload: a form POST of `fields`, then the file, to `uploadUrl`."""
    body = {
        "bucket": upload.bucket,
        "key": upload.key,
        "uploadUrl": upload.url,
        "fields": upload.fields,
        "expiresAt": isoformat(upload.expires_at),
        "maxBytes": upload.max_bytes,
    }
    return Response(body=body, status_code=201)


def usage_response(usage: Usage) -> Response:
    """`200` with the caller's plan, its limits (null without tenants) and its unfinished jobs."""
    tenant = usage.tenant
    body = {
        "client": usage.client,
        "plan": None if tenant is None else tenant.plan,
        "limits": None if tenant is None else tenant.limits.to_json(),
        "usage": {
            "activeJobs": usage.active.total,
            **{f"{status.value.lower()}Jobs": n for status, n in usage.active.by_status.items()},
            "heldJobs": usage.active.held,
        },
    }
    return Response(body=body, status_code=200, headers={"Cache-Control": "no-store"})


def health_response(checks: dict[str, str], detail: str | None = None) -> Response:
    """200 when every dependency answers; 503 naming the ones that do not (and why, given `detail`)."""
    down = sorted(name for name, state in checks.items() if state != "ok")
    if not down:
        return Response(body={"status": "ok", "checks": checks}, status_code=200)
    message = f"unavailable: {', '.join(down)}" + (f" ({detail})" if detail else "")
    return Response(
        body={"code": "ServiceUnavailable", "message": message, "status": "unavailable", "checks": checks},
        status_code=503,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


def asset_response(content: str, content_type: str, *, upload_origin: str | None = None) -> Response:
    """A dashboard file; the page itself gets the Content-Security-Policy (which lets it send files
    to `upload_origin`) and is never cached stale."""
    headers: dict[str, str | list[str]] = {"Content-Type": content_type, "X-Content-Type-Options": "nosniff"}
    if content_type.startswith("text/html"):
        policy = dashboard.content_security_policy(upload_origin)
        headers.update({"Content-Security-Policy": policy, "Cache-Control": "no-cache"})
    else:
        headers["Cache-Control"] = "max-age=300"
    return Response(body=content, status_code=200, headers=headers)


def deliveries_response(deliveries: list[dict[str, Any]]) -> Response:
    """`200` with a job's webhook attempts: `{"deliveries": [{attempt, at, statusCode, error, nextRetryAt}]}`."""
    keys = ("attempt", "at", "statusCode", "error", "nextRetryAt")
    body = {"deliveries": [{key: item.get(key) for key in keys} for item in deliveries]}
    return Response(body=body, status_code=200, headers={"Cache-Control": "no-store"})


def secret_response(secret: str) -> Response:
    """`200` with the caller's webhook signing secret; never cached."""
    return Response(body={"secret": secret}, status_code=200, headers={"Cache-Control": "no-store"})


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    """The API's JSON of a schedule, as `GET /schedules/{id}` answers it."""
    return {
        "scheduleId": schedule.id,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "job": schedule.job,
        "overlap": schedule.overlap.value,
        "paused": schedule.paused,
        "nextRunAt": isoformat(schedule.next_run_at),
        "lastRunAt": isoformat(schedule.last_run_at),
        "lastJobId": schedule.last_job_id,
        "skipped": schedule.skipped,
        "lastSkippedAt": isoformat(schedule.last_skipped_at),
        "lastSkipReason": errors.sanitise(schedule.last_skip_reason),
        "createdAt": isoformat(schedule.created_at),
        "updatedAt": isoformat(schedule.updated_at),
    }


def schedule_response(schedule: Schedule, *, status: int = 200) -> Response:
    """A schedule's view; a new one (201) with its Location."""
    headers: dict[str, str | list[str]] = {"Location": f"/schedules/{schedule.id}"} if status == 201 else {}
    return Response(body=schedule_view(schedule), status_code=status, headers=headers)


def schedules_response(page: SchedulePage) -> Response:
    """A page of schedules as `GET /schedules` answers it: `{"schedules": [...], "nextCursor"}`."""
    body = {"schedules": [schedule_view(s) for s in page.schedules], "nextCursor": page.next_cursor}
    return Response(body=body, status_code=200)


def no_content_response() -> Response:
    """`204` and no body (a deleted schedule)."""
    return Response(body="", status_code=204)
