"""The OpenAPI 3 document of the API, served at GET /openapi.json.

Kept next to the routes it describes; the submission schema is built from the job-type registry,
so a new type's payload schema is published (and fuzzed) without editing this file.
"""

from __future__ import annotations

from typing import Any

from . import dashboard
from .config import Settings
from .http import IDEMPOTENCY_KEY_PATTERN
from .jobs import JobType, JobTypes
from .models import JOB_ID_PATTERN as CANONICAL_JOB_ID
from .models import JobStatus
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
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}


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
        "attempts": {"type": "integer", "minimum": 0},
        "maxAttempts": {"type": "integer", "minimum": 1},
        "cancelRequested": {"type": "boolean"},
        "createdAt": _TIMESTAMP,
        "runAt": _nullable({**_TIMESTAMP, "description": "when a scheduled job starts (null: at once)"}),
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


def _submission(job_type: JobType) -> dict[str, Any]:
    # An absent payload is {}: required only when its schema requires fields.
    defaults = Settings()
    return {
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
        },
    }


def _upload_paths() -> dict[str, Any]:
    return {
        "/uploads": {
            "post": {
                "operationId": "createUpload",
                "summary": "A presigned upload of one input file, under the caller's own prefix",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadRequest"}}},
                },
                "responses": {
                    "201": {
                        "description": "POST `fields`, then the file as the form's last field `file`, to `uploadUrl`",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Upload"}}},
                    },
                    "400": _error("not JSON, an unknown field, a filename with a path, bytes over the limit"),
                    "413": _error("the body is too large"),
                    "415": _error("the body is not JSON"),
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
                        "required": ["maxActiveJobs", "maxRunningJobs", "maxTimeoutSeconds"],
                        "properties": {
                            "maxActiveJobs": {**limit, "description": "unfinished jobs at once; over it, 429"},
                            "maxRunningJobs": {**limit, "description": "jobs RUNNING at once"},
                            "maxTimeoutSeconds": {**limit, "description": "the largest timeoutSeconds; over it, 400"},
                        },
                    }
                ),
                "usage": {"type": "object", "required": sorted(usage), "properties": usage},
            },
        }
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
            "/jobs": {
                "post": {
                    "operationId": "submitJob",
                    "summary": "Submit a job; answers at once with its id",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                        }
                    ],
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
            **_limits_paths(),
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
                **_limits_schemas(),
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
