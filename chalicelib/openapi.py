"""The OpenAPI 3 document of the API, served at GET /openapi.json.

Kept next to the routes it describes; the submission schema is built from the job-type registry,
so a new type's payload schema is published (and fuzzed) without editing this file.
"""

from __future__ import annotations

from typing import Any

from . import dashboard
from .batches import MAX_BATCH_JOBS
from .bulk import CANCELLABLE, MAX_BULK_CANCEL
from .config import Settings
from .dependencies import MAX_DEPENDENCIES
from .http import IDEMPOTENCY_KEY_PATTERN
from .jobs import JobType, JobTypes
from .models import JOB_ID_PATTERN as CANONICAL_JOB_ID
from .models import JobStatus, Priority
from .schedule_store import DEFAULT_TIMEZONE, MAX_CRON_CHARS, MAX_ZONE_CHARS, Overlap
from .service import (
    DEFAULT_LIMIT,
    MAX_ATTEMPTS,
    MAX_DELAY_SECONDS,
    MAX_IDS,
    MAX_LIMIT,
    MAX_TIMEOUT_SECONDS,
    RETRY_AFTER_MAX,
    RETRY_AFTER_MIN,
)
from .uploads import CONTENT_TYPE_PATTERN, MAX_FILENAME_CHARS
from .webhooks.guard import MAX_URL_CHARS

# Job ids are ULIDs (models.JOB_ID_PATTERN); the API accepts them in either case.
JOB_ID_PATTERN = "^" + CANONICAL_JOB_ID.replace("A-HJKMNP-TV-Z", "A-HJKMNP-TV-Za-hjkmnp-tv-z") + "$"
_TIMESTAMP = {"type": "string", "format": "date-time", "example": "2026-11-23T10:31:44.236Z"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _error(description: str, **extra_headers: Any) -> dict[str, Any]:
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if extra_headers:
        response["headers"] = extra_headers
    return response


_RETRY_AFTER = {
    "description": f"seconds before polling again ({RETRY_AFTER_MIN}-{RETRY_AFTER_MAX})",
    "schema": {"type": "integer", "minimum": RETRY_AFTER_MIN, "maximum": RETRY_AFTER_MAX},
}
_COMMON_ERRORS = {
    "403": _error("no API key, or an invalid one"),
    "429": _error("throttled by the usage plan (API Gateway)"),
    "503": _error("a dependency is down; try again", **{"Retry-After": {"schema": {"type": "integer"}}}),
}
#: The errors of a route that takes a JSON body.
_BODY_ERRORS = {"413": _error("the body is too large"), "415": _error("the body is not JSON")}


def _json_request(schema: str, *, required: bool = True) -> dict[str, Any]:
    """A JSON request body of the named component schema."""
    return {
        "required": required,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


#: `limit` and `cursor` of a list (keyset pagination: the cursor is the last id of the page before).
_PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
        "description": "nextCursor of the previous page",
    },
]
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}


_PRIORITY = {
    "type": "string",
    "enum": [p.value for p in Priority],
    "description": "high: the job's own queue and workers, so a backlog of normal jobs never delays it",
}


def _job_schema(*, with_result: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "jobId": {"type": "string", "pattern": JOB_ID_PATTERN},
        "type": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in JobStatus]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "progressDetail": _nullable(
            {
                "type": "object",
                "required": ["done", "total", "stage"],
                "properties": {
                    "done": {"type": "integer", "minimum": 0},
                    "total": _nullable({"type": "integer", "minimum": 0}),
                    "stage": _nullable({"type": "string"}),
                },
            }
        ),
        "message": _nullable({"type": "string"}),
        "etaSeconds": _nullable({"type": "integer", "minimum": 0}),
        "updatedAt": _TIMESTAMP,
        "error": _nullable({"type": "string"}),
        "previousError": _nullable({"type": "string", "description": "the error of the run before a retry"}),
        "attempts": {"type": "integer", "minimum": 0},
        "maxAttempts": {"type": "integer", "minimum": 1},
        "cancelRequested": {"type": "boolean"},
        "createdAt": _TIMESTAMP,
        "runAt": _nullable({**_TIMESTAMP, "description": "when a scheduled job starts (null: at once)"}),
        "priority": _PRIORITY,
        "batchId": _nullable(
            {"type": "string", "pattern": JOB_ID_PATTERN, "description": "the batch it is a member or the then of"}
        ),
        "dependsOn": _nullable(
            {
                "type": "array",
                "items": {"type": "string", "pattern": JOB_ID_PATTERN},
                "description": "the jobs it waits for (WAITING until all completed)",
            }
        ),
        "startedAt": _nullable(_TIMESTAMP),
        "finishedAt": _nullable(_TIMESTAMP),
        "stalled": {"type": "boolean", "description": "RUNNING, but no checkpoint for longer than a lease"},
        "resultBytes": _nullable(
            {"type": "integer", "minimum": 0, "description": "size of the result's JSON (COMPLETED jobs)"}
        ),
    }
    if with_result:
        properties["result"] = {
            "nullable": True,
            "description": "the job type's result (any JSON value); null when it is too large to be inline"
            " (see resultUrl)",
        }
        properties["resultUrl"] = _nullable(
            {
                "type": "string",
                "format": "uri",
                "description": "a result over INLINE_RESULT_BYTES: a presigned GET, valid a few minutes from"
                " this response (GET /jobs/{id}/result gives a fresh one)",
            }
        )
    return {"type": "object", "required": sorted(properties), "properties": properties}


_DEPENDS_ON = (
    "wait for these jobs (the caller's own) to complete: the job is WAITING until then, and is"
    " CANCELLED with error `dependency <id> FAILED` when one of them does not complete. Not with runAt"
)


def _submission(job_type: JobType, *, place: str = "job") -> dict[str, Any]:
    """The spec of a job of this type: `job` (POST /jobs), `member` (of a batch: dependsOn may name an
    earlier member by its index) or `then` (a batch's fan-in, a schedule's template: no runAt,
    delaySeconds or dependsOn)."""
    # An absent payload is {}: required only when its schema requires fields.
    defaults = Settings()
    dependency: dict[str, Any] = {"type": "string", "pattern": JOB_ID_PATTERN}
    if place == "member":
        dependency = {"oneOf": [dependency, {"type": "integer", "minimum": 0, "maximum": MAX_BATCH_JOBS - 1}]}
    spec: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "payload"] if job_type.payload_schema.get("required") else ["type"],
        "properties": {
            "type": {"type": "string", "enum": [job_type.name]},
            "payload": job_type.payload_schema,
            "maxAttempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ATTEMPTS,
                "default": defaults.default_max_attempts,
            },
            "timeoutSeconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_TIMEOUT_SECONDS,
                "default": defaults.default_timeout_seconds,
            },
            "priority": {**_PRIORITY, "default": Priority.NORMAL.value},
            "runAt": {
                "type": "string",
                "format": "date-time",
                "description": "start no earlier than this (RFC 3339 with an offset; in the future, at most a"
                " year ahead): the job is SCHEDULED until then. Not with delaySeconds",
            },
            "delaySeconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "start this many seconds from now (0: at once). Not with runAt",
            },
            "callbackUrl": {
                "type": "string",
                "nullable": True,
                "format": "uri",
                "maxLength": MAX_URL_CHARS,
                "description": "where a signed POST (Standard Webhooks) goes when the job ends, retried for a"
                " day; https only (http only where the deployment allows it), to a public address: a host that"
                " is a private, loopback, link-local, CGNAT, multicast or metadata address is a 400, a name"
                " resolving to one is refused at delivery (see GET /jobs/{id}/deliveries); null: none",
            },
            "dependsOn": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_DEPENDENCIES,
                "items": dependency,
                "description": _DEPENDS_ON
                + (" (an integer: the index of an earlier job of the batch)" if place == "member" else ""),
            },
        },
    }
    if place == "then":
        for name in ("runAt", "delaySeconds", "dependsOn"):
            del spec["properties"][name]
    return spec


def _batch_paths() -> dict[str, Any]:
    batch = {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}}
    batch_id = {
        "name": "batch_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    }
    return {
        "/batches": {
            "post": {
                "operationId": "submitBatch",
                "summary": f"Submit up to {MAX_BATCH_JOBS} jobs at once, with an optional fan-in job (then)",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchSubmission"}}},
                },
                "responses": {
                    "202": {
                        "description": "stored and queued, all or none (or the earlier batch of this Idempotency-Key)",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchSubmitted"}}},
                    },
                    "400": _error("a malformed batch, or invalid job specs: `errors` lists each by index"),
                    "409": _error("this Idempotency-Key was used with another request"),
                    "413": _error("the body is too large"),
                    "415": _error("the body is not JSON"),
                    **_COMMON_ERRORS,
                    "429": _error(
                        "throttled by the usage plan, or code ActiveJobLimit: the batch would take the caller over"
                        " its plan's maxActiveJobs",
                        **{"Retry-After": {"schema": {"type": "integer"}}},
                    ),
                },
            }
        },
        "/batches/{batch_id}": {
            "parameters": [batch_id],
            "get": {
                "operationId": "getBatch",
                "summary": "A batch's status, counts by status, mean progress, then job and a page of its job ids",
                "parameters": [
                    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": JOB_ID_PATTERN}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                ],
                "responses": {
                    "200": {"description": "the batch", "headers": {"Retry-After": _RETRY_AFTER}, "content": batch},
                    "400": _error("a bad cursor or limit"),
                    "404": _error("no batch of the caller has this id"),
                    **_COMMON_ERRORS,
                },
            },
            "delete": {
                "operationId": "cancelBatch",
                "summary": "Cancel every unfinished job of the batch (its then first)",
                "responses": {
                    "200": {"description": "the batch, cancelled", "content": batch},
                    "404": _error("no batch of the caller has this id"),
                    **_COMMON_ERRORS,
                },
            },
        },
    }


def _batch_schemas(job_types: JobTypes) -> dict[str, Any]:
    names = job_types.names()
    counts = {"type": "integer", "minimum": 0}
    return {
        "BatchSubmission": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_JOBS,
                    "items": {"oneOf": [_submission(job_types.get(n), place="member") for n in names]},
                },
                "then": {"oneOf": [_submission(job_types.get(n), place="then") for n in names]},
                "thenOnFailure": {
                    "type": "string",
                    "enum": ["cancel", "run"],
                    "default": "cancel",
                    "description": "when a member did not complete: cancel then (with the reason), or run it anyway",
                },
                "callbackUrl": {"type": "string", "nullable": True, "format": "uri", "maxLength": MAX_URL_CHARS},
            },
        },
        "BatchSubmitted": {
            "type": "object",
            "required": ["batchId", "jobIds", "thenJobId"],
            "properties": {
                "batchId": {"type": "string", "pattern": JOB_ID_PATTERN},
                "jobIds": {"type": "array", "items": {"type": "string", "pattern": JOB_ID_PATTERN}},
                "thenJobId": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
            },
        },
        "Batch": {
            "type": "object",
            "required": [
                *("batchId", "status", "counts", "progress", "then", "thenJobId", "jobIds", "nextCursor"),
                *("createdAt", "cancelled"),
            ],
            "properties": {
                "batchId": {"type": "string", "pattern": JOB_ID_PATTERN},
                "status": {
                    "type": "string",
                    "enum": ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"],
                    "description": "PENDING before any job started; RUNNING while one is active; then CANCELLED"
                    " after a DELETE, COMPLETED when every member and then completed, FAILED otherwise",
                },
                "counts": {
                    "type": "object",
                    "required": [s.value for s in JobStatus],
                    "properties": {s.value: counts for s in JobStatus},
                    "description": "the members by status (then is reported beside them)",
                },
                "progress": {"type": "integer", "minimum": 0, "maximum": 100, "description": "the members' mean"},
                "then": _nullable(
                    {
                        "type": "object",
                        "required": ["jobId", "status"],
                        "properties": {
                            "jobId": {"type": "string", "pattern": JOB_ID_PATTERN},
                            "status": {"type": "string", "enum": [s.value for s in JobStatus]},
                        },
                    }
                ),
                "thenJobId": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
                "jobIds": {"type": "array", "items": {"type": "string", "pattern": JOB_ID_PATTERN}},
                "nextCursor": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
                "createdAt": _TIMESTAMP,
                "cancelled": {"type": "boolean"},
            },
        },
    }


def _rerun_paths() -> dict[str, Any]:
    job_json = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    return {
        "/jobs/{job_id}/retry": {
            "parameters": [_JOB_ID],
            "post": {
                "operationId": "retryJob",
                "summary": "Run a FAILED or CANCELLED job again under its id, from its last durable checkpoint",
                "requestBody": _json_request("RetryRequest", required=False),
                "responses": {
                    "202": {
                        "description": "PENDING again (WAITING while a job it depends on has not ended):"
                        " attempts 0, the error before as previousError",
                        "headers": {"Retry-After": _RETRY_AFTER},
                        "content": job_json,
                    },
                    "400": _error("not a job id, not JSON, an unknown field, or a query parameter"),
                    "404": _error("no job of the caller has this id"),
                    "409": _error(
                        "code JobNotRetryable: the job is neither FAILED nor CANCELLED (its status named), or a"
                        " job it depends on FAILED or was CANCELLED (named: retry that one first)"
                    ),
                    **_BODY_ERRORS,
                    **_COMMON_ERRORS,
                    "429": _error(
                        "throttled by the usage plan (API Gateway), or code ActiveJobLimit: as many"
                        " unfinished jobs as the plan's maxActiveJobs",
                        **{"Retry-After": {"schema": {"type": "integer"}}},
                    ),
                },
            },
        },
        "/jobs/cancel": {
            "post": {
                "operationId": "cancelJobs",
                "summary": f"Cancel the caller's unfinished jobs that match a filter, at most {MAX_BULK_CANCEL} a call",
                "requestBody": _json_request("CancelFilter"),
                "responses": {
                    "200": {
                        "description": "how many were cancelled (unstarted ones) or asked to stop (RUNNING ones)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Cancelled"}}},
                    },
                    "400": _error("not JSON, an empty filter, an unknown field, status, type, batchId or cursor"),
                    **_BODY_ERRORS,
                    **_COMMON_ERRORS,
                },
            }
        },
    }


def _rerun_schemas(job_types: JobTypes) -> dict[str, Any]:
    return {
        "RetryRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "fromStart": {
                    "type": "boolean",
                    "default": False,
                    "description": "discard the checkpoint and the progress: every chunk runs again",
                }
            },
        },
        "CancelFilter": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "anyOf": [{"required": ["status"]}, {"required": ["type"]}, {"required": ["batchId"]}],
            "description": "status, type, batchId or several (an empty filter is a 400: it would cancel everything)",
            "properties": {
                "status": {"type": "string", "enum": [s.value for s in CANCELLABLE]},
                "type": {"type": "string", "enum": job_types.names()},
                "batchId": {
                    "type": "string",
                    "pattern": JOB_ID_PATTERN,
                    "description": "the jobs of this batch (its then included); another client's batch matches none",
                },
                "cursor": {
                    "type": "string",
                    "pattern": JOB_ID_PATTERN,
                    "description": "nextCursor of the previous call",
                },
            },
        },
        "Cancelled": {
            "type": "object",
            "required": ["cancelled", "nextCursor"],
            "properties": {
                "cancelled": {"type": "integer", "minimum": 0, "maximum": MAX_BULK_CANCEL},
                "nextCursor": _nullable(
                    {
                        "type": "string",
                        "pattern": JOB_ID_PATTERN,
                        "description": "more jobs matched than one call cancels: send the filter again with it",
                    }
                ),
            },
        },
    }


def _webhook_paths() -> dict[str, Any]:
    return {
        "/jobs/{job_id}/deliveries": {
            "parameters": [_JOB_ID],
            "get": {
                "operationId": "getJobDeliveries",
                "summary": "The attempts to deliver the job's completion webhook, oldest first",
                "responses": {
                    "200": {
                        "description": "the attempts (none for a job without callbackUrl, or not ended yet)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deliveries"}}},
                    },
                    "400": _error("not a job id, or a query parameter (this route takes none)"),
                    "404": _error("no job of the caller has this id"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/webhook-secret": {
            "get": {
                "operationId": "getWebhookSecret",
                "summary": "The caller's webhook signing secret (verify deliveries with it)",
                "responses": {
                    "200": {
                        "description": "the secret",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookSecret"}}},
                    },
                    "400": _error("a query parameter (this route takes none)"),
                    **_COMMON_ERRORS,
                },
            }
        },
    }


def _webhook_schemas() -> dict[str, Any]:
    return {
        "Deliveries": {
            "type": "object",
            "required": ["deliveries"],
            "properties": {
                "deliveries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["attempt", "at", "statusCode", "error", "nextRetryAt"],
                        "properties": {
                            "attempt": {"type": "integer", "minimum": 1},
                            "at": _TIMESTAMP,
                            "statusCode": _nullable({"type": "integer", "description": "the receiver's status"}),
                            "error": _nullable(
                                {"type": "string", "description": "a non-2xx answer, a timeout, a refused address"}
                            ),
                            "nextRetryAt": _nullable({**_TIMESTAMP, "description": "null: no retry follows"}),
                        },
                    },
                }
            },
        },
        "WebhookSecret": {
            "type": "object",
            "required": ["secret"],
            "properties": {"secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]+$"}},
        },
    }


def _upload_paths() -> dict[str, Any]:
    return {
        "/uploads": {
            "post": {
                "operationId": "createUpload",
                "summary": "A presigned upload of one input file, under the caller's own prefix",
                "requestBody": _json_request("UploadRequest"),
                "responses": {
                    "201": {
                        "description": "POST `fields`, then the file as the form's last field `file`, to `uploadUrl`",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}},
                    },
                    "400": _error("not JSON, an unknown field, a filename with a path, bytes over the limit"),
                    **_BODY_ERRORS,
                    **_COMMON_ERRORS,
                },
            }
        }
    }


def _limits_paths() -> dict[str, Any]:
    return {
        "/limits": {
            "get": {
                "operationId": "getLimits",
                "summary": "The caller's plan, its job limits and its unfinished jobs",
                "responses": {
                    "200": {
                        "description": "limits and usage (limits null where the deployment has no tenants)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Limits"}}},
                    },
                    "400": _error("a query parameter (this route takes none)"),
                    **_COMMON_ERRORS,
                },
            }
        }
    }


def _limits_schemas() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    limit = {"type": "integer", "minimum": 1}
    usage = {
        "activeJobs": count,
        **{f"{s.value.lower()}Jobs": count for s in JobStatus if not s.terminal},
        "heldJobs": {**count, "description": "PENDING jobs held back for a free slot of maxRunningJobs"},
    }
    return {
        "Limits": {
            "type": "object",
            "required": ["client", "plan", "limits", "usage"],
            "properties": {
                "client": {"type": "string", "description": "who the API key belongs to: the owner of its jobs"},
                "plan": _nullable({"type": "string"}),
                "limits": _nullable(
                    {
                        "type": "object",
                        "required": ["maxActiveJobs", "maxRunningJobs", "maxTimeoutSeconds", "maxSchedules"],
                        "properties": {
                            "maxActiveJobs": {**limit, "description": "unfinished jobs at once; over it, 429"},
                            "maxSchedules": {**limit, "description": "schedules at once; over it, 409"},
                            "maxRunningJobs": {**limit, "description": "jobs RUNNING at once"},
                            "maxTimeoutSeconds": {**limit, "description": "the largest timeoutSeconds; over it, 400"},
                        },
                    }
                ),
                "usage": {"type": "object", "required": sorted(usage), "properties": usage},
            },
        }
    }


_SCHEDULE_ID = {
    "name": "schedule_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
}


def _schedule_paths() -> dict[str, Any]:
    schedule_json = {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}}
    body_errors = {
        "413": _error("the body is too large"),
        "415": _error("the body is not JSON"),
    }
    return {
        "/schedules": {
            "post": {
                "operationId": "createSchedule",
                "summary": "A recurring schedule: a job made for each occurrence of a cron expression in a zone",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleRequest"}}},
                },
                "responses": {
                    "201": {
                        "description": "stored, with its first occurrence (nextRunAt)",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": schedule_json,
                    },
                    "400": _error("not JSON, a bad cron or time zone, a job template a submission could not be"),
                    "409": _error("code ScheduleLimit: as many schedules as the plan's maxSchedules"),
                    **body_errors,
                    **_COMMON_ERRORS,
                },
            },
            "get": {
                "operationId": "listSchedules",
                "summary": "The caller's schedules, newest first",
                "parameters": _PAGE_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "a page of schedules",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScheduleList"}}},
                    },
                    "400": _error("a bad limit or cursor"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/schedules/{schedule_id}": {
            "parameters": [_SCHEDULE_ID],
            "get": {
                "operationId": "getSchedule",
                "summary": "A schedule, its next and last occurrence",
                "responses": {
                    "200": {"description": "the schedule", "content": schedule_json},
                    "400": _error("a query parameter (this route takes none)"),
                    "404": _error("no schedule of the caller has this id"),
                    **_COMMON_ERRORS,
                },
            },
            "patch": {
                "operationId": "updateSchedule",
                "summary": "Pause, resume or change a schedule",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SchedulePatch"}}},
                },
                "responses": {
                    "200": {"description": "the schedule as changed", "content": schedule_json},
                    "400": _error("not JSON, a bad field (as for POST /schedules)"),
                    "404": _error("no schedule of the caller has this id"),
                    **body_errors,
                    **_COMMON_ERRORS,
                },
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete a schedule (its next job, made ahead and not yet due, is cancelled)",
                "responses": {
                    "204": {"description": "deleted"},
                    "400": _error("a query parameter (this route takes none)"),
                    "404": _error("no schedule of the caller has this id"),
                    **_COMMON_ERRORS,
                },
            },
        },
    }


def _schedule_schemas(job_types: JobTypes) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "cron": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CRON_CHARS,
            "example": "*/5 * * * *",
            "description": "5 fields: minute hour day-of-month month day-of-week (at most once a minute)",
        },
        "timezone": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ZONE_CHARS,
            "default": DEFAULT_TIMEZONE,
            "example": "Europe/Berlin",
            "description": "the IANA zone the expression is read in (DST: see the README)",
        },
        # A schedule's job template: a job with no time of its own, like a batch's then.
        "job": {"oneOf": [_submission(job_types.get(name), place="then") for name in job_types.names()]},
        "overlap": {
            "type": "string",
            "enum": [o.value for o in Overlap],
            "default": Overlap.SKIP.value,
            "description": "skip: an occurrence while the previous job is still active is skipped (and counted)",
        },
        "paused": {"type": "boolean", "default": False},
    }
    view: dict[str, Any] = {
        "scheduleId": {"type": "string", "pattern": JOB_ID_PATTERN},
        **{name: {k: v for k, v in fields[name].items() if k != "default"} for name in ("cron", "timezone")},
        "job": {"type": "object", "description": "the job template as given"},
        "overlap": {"type": "string", "enum": [o.value for o in Overlap]},
        "paused": {"type": "boolean"},
        "nextRunAt": _nullable({**_TIMESTAMP, "description": "the next occurrence; null while paused"}),
        "lastRunAt": _nullable({**_TIMESTAMP, "description": "the occurrence of the last job made"}),
        "lastJobId": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
        "skipped": {"type": "integer", "minimum": 0, "description": "occurrences skipped (overlap, limits)"},
        "lastSkippedAt": _nullable(_TIMESTAMP),
        "lastSkipReason": _nullable({"type": "string"}),
        "createdAt": _TIMESTAMP,
        "updatedAt": _TIMESTAMP,
    }
    return {
        "ScheduleRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cron", "job"],
            "properties": fields,
        },
        "SchedulePatch": {"type": "object", "additionalProperties": False, "properties": fields},
        "Schedule": {"type": "object", "required": sorted(view), "properties": view},
        "ScheduleList": {
            "type": "object",
            "required": ["schedules", "nextCursor"],
            "properties": {
                "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}},
                "nextCursor": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
            },
        },
    }


def _upload_schemas(max_bytes: int) -> dict[str, Any]:
    return {
        "UploadRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "filename": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_FILENAME_CHARS,
                    # No path separator, no control character, not "." or "..".
                    "pattern": r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]*$",
                    "description": "the file's name (no path): the key ends in it, unsafe characters as _",
                },
                "contentType": {"type": "string", "pattern": CONTENT_TYPE_PATTERN},
                "bytes": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": max_bytes,
                    "description": "the file's exact size; without it, any size up to the maximum",
                },
            },
        },
        "Upload": {
            "type": "object",
            "required": ["bucket", "key", "uploadUrl", "fields", "expiresAt", "maxBytes"],
            "properties": {
                "bucket": {"type": "string"},
                "key": {"type": "string", "description": "inputs/<owner>/<ULID>-<filename>: put it in a payload"},
                "uploadUrl": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                "expiresAt": _TIMESTAMP,
                "maxBytes": {"type": "integer", "minimum": 0},
            },
        },
    }


def document(job_types: JobTypes, *, upload_max_bytes: int = Settings.upload_max_bytes) -> dict[str, Any]:
    """The whole OpenAPI 3.0 document."""
    job = {"$ref": "#/components/schemas/Job"}
    job_json = {"application/json": {"schema": job}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jobs",
            "version": "1.0.0",
            "description": "Submit long-running jobs, poll their progress, cancel them, fetch results.",
        },
        "security": [{"apiKey": []}],
        "paths": {
            **_batch_paths(),
            "/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a job; answers at once with its id",
                    "parameters": [_IDEMPOTENCY_KEY],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}},
                    },
                    "responses": {
                        "202": {
                            "description": "stored and queued (or the earlier job of this Idempotency-Key)",
                            "headers": {"Location": {"schema": {"type": "string"}}, "Retry-After": _RETRY_AFTER},
                            "content": job_json,
                        },
                        "400": _error("not JSON, unknown type, invalid payload or options"),
                        "409": _error("this Idempotency-Key was used with another request"),
                        "413": _error("the body is too large"),
                        "415": _error("the body is not JSON"),
                        **_COMMON_ERRORS,
                        "429": _error(
                            "throttled by the usage plan (API Gateway), or code ActiveJobLimit: as many"
                            " unfinished jobs as the plan's maxActiveJobs (submit again after Retry-After)",
                            **{"Retry-After": {"schema": {"type": "integer"}}},
                        ),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "The caller's jobs, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": [s.value for s in JobStatus]},
                        },
                        {"name": "type", "in": "query", "schema": {"type": "string", "enum": job_types.names()}},
                        *_PAGE_PARAMETERS,
                        {
                            "name": "ids",
                            "in": "query",
                            "style": "form",
                            "explode": False,
                            "schema": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_IDS,
                                "items": {"type": "string", "pattern": JOB_ID_PATTERN},
                            },
                            "description": f"up to {MAX_IDS} job ids, comma-separated: one poll for many jobs. The"
                            " list is then restricted to those of them that are the caller's (unknown and others'"
                            " ids are simply absent), read in one Redis round trip plus one MySQL query for the"
                            " jobs Redis lacks; status, type and cursor filter them as they filter the list, and"
                            " limit defaults to the number of ids. The answer's Retry-After is the smallest of"
                            " its active jobs'.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "a page of jobs",
                            "headers": {
                                "Retry-After": {
                                    **_RETRY_AFTER,
                                    "description": "with ids, when one of the jobs is active: the smallest"
                                    " Retry-After of them",
                                }
                            },
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobList"}}},
                        },
                        "400": _error("a bad status, type, limit, cursor or ids (more than 100, or one not a job id)"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/jobs/{job_id}": {
                "parameters": [_JOB_ID],
                "get": {
                    "operationId": "getJob",
                    "summary": "A job's status, progress and result",
                    "responses": {
                        "200": {
                            "description": "the job",
                            "headers": {"Retry-After": _RETRY_AFTER},
                            "content": job_json,
                        },
                        "400": _error("not a job id"),
                        "404": _error("no job of the caller has this id"),
                        **_COMMON_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a job",
                    "responses": {
                        "200": {"description": "cancelled (it was PENDING, or already CANCELLED)", "content": job_json},
                        "202": {
                            "description": "RUNNING: it stops at its next chunk boundary",
                            "headers": {"Retry-After": _RETRY_AFTER},
                            "content": job_json,
                        },
                        "400": _error("not a job id"),
                        "404": _error("no job of the caller has this id"),
                        "409": _error("the job has finished (COMPLETED or FAILED)"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            **_upload_paths(),
            **_schedule_paths(),
            **_limits_paths(),
            **_webhook_paths(),
            **_rerun_paths(),
            "/jobs/{job_id}/result": {
                "parameters": [_JOB_ID],
                "get": {
                    "operationId": "getJobResult",
                    "summary": "A completed job's result: the JSON itself, or a redirect to its object in S3",
                    "responses": {
                        "200": {
                            "description": "the result, inline (any JSON value)",
                            "content": {"application/json": {"schema": {"nullable": True}}},
                        },
                        "303": {
                            "description": "the result is an object in S3: Location is a presigned GET of it",
                            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                        },
                        "400": _error("not a job id"),
                        "404": _error("no job of the caller has this id"),
                        "409": _error("the job has not completed (PENDING, RUNNING, FAILED or CANCELLED)"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether MySQL, Redis and SQS answer",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "all dependencies answer",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        },
                        "503": {
                            "description": "at least one dependency does not answer",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        },
                    },
                },
            },
            "/dashboard": {
                "get": {
                    "operationId": "dashboard",
                    "summary": "The web dashboard (the page asks for an API key itself)",
                    "security": [],
                    "responses": {
                        "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
                    },
                },
            },
            "/dashboard/{name}": {
                "get": {
                    "operationId": "dashboardFile",
                    "summary": "A file of the dashboard",
                    "security": [],
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": sorted(dashboard.ASSETS)},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the file",
                            "content": {
                                "text/javascript": {"schema": {"type": "string"}},
                                "text/css": {"schema": {"type": "string"}},
                                "text/html": {"schema": {"type": "string"}},
                            },
                        },
                        "404": _error("no such file"),
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "the OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {
                "Submission": {"oneOf": [_submission(job_types.get(name)) for name in job_types.names()]},
                "Job": _job_schema(with_result=True),
                "JobSummary": _job_schema(with_result=False),
                "JobList": {
                    "type": "object",
                    "required": ["jobs", "nextCursor"],
                    "properties": {
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
                        "nextCursor": _nullable({"type": "string", "pattern": JOB_ID_PATTERN}),
                    },
                },
                **_upload_schemas(upload_max_bytes),
                **_schedule_schemas(job_types),
                **_limits_schemas(),
                **_webhook_schemas(),
                **_rerun_schemas(job_types),
                **_batch_schemas(job_types),
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "unavailable"]},
                        "checks": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "enum": ["ok", "unavailable"]},
                        },
                    },
                },
            },
        },
    }
