"""Settings from the environment: the one place that reads it.

The variable names are the contract between infra/, .chalice/config.json and the code; README.md
keeps them in one table. Every setting has a local default, so a laptop needs none of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _names(env, name: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around names and empty items are ignored."""
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def tracing_on(env=None) -> bool:
    """TRACING (Settings.tracing), read without building the whole of the settings: each traced
    method asks at import."""
    return _flag(os.environ if env is None else env, "TRACING")


def _flag(env, name: str) -> bool:
    raw = (env.get(name) or "off").lower()
    if raw not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f"{name} must be on or off, got {raw!r}")
    return raw in ("on", "true", "1")


@dataclass(frozen=True)
class Settings:
    """What the functions need to reach their dependencies and how they behave."""

    # Credentials never appear in a repr (and so in no log line): the URLs may carry passwords.
    mysql_url: str = field(default="mysql://root@127.0.0.1:3306/jobs", repr=False)
    #: Secrets Manager secret (RDS style: JSON with username and password) overriding the URL's.
    mysql_secret_arn: str | None = None
    #: Require TLS to MySQL, verifying the server against MYSQL_TLS_CA (or the system's CAs).
    mysql_tls: bool = False
    mysql_tls_ca: str | None = None
    #: rediss:// for TLS (ElastiCache in-transit encryption); options such as ssl_ca_certs in the query.
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    #: The Redis AUTH token, given directly or as a Secrets Manager secret (its SecretString).
    redis_auth_token: str | None = field(default=None, repr=False)
    redis_auth_secret_arn: str | None = None
    #: Prefix of every Redis key, so several deployments or test runs can share one server.
    redis_prefix: str = "jobs:"
    jobs_queue_url: str = ""
    #: Queue name for the SQS trigger in app.py (Chalice needs it at import time).
    jobs_queue_name: str = "jobs"
    #: The dead-letter queue's name, for the DLQ handler's trigger (default: `<jobs queue>-dlq`).
    jobs_dlq_name: str = "jobs-dlq"
    #: The high-priority queue (jobs submitted with `priority: "high"`), its name (default
    #: `<jobs queue>-high`) and its dead-letter queue's (default `<high queue>-dlq`), for their
    #: triggers in app.py. No URL: high jobs share the jobs queue.
    jobs_high_queue_url: str = ""
    jobs_high_queue_name: str = "jobs-high"
    jobs_high_dlq_name: str = "jobs-high-dlq"
    #: The webhooks queue (completion webhooks: webhooks/) and its name (default `<jobs queue>-webhooks`),
    #: for the delivery function's trigger in app.py. No URL: nothing is delivered (rows stay WAITING).
    webhooks_queue_url: str = ""
    webhooks_queue_name: str = "jobs-webhooks"
    #: Secrets Manager names of the clients' webhook signing secrets: `<prefix><client>`.
    webhook_secret_prefix: str = "jobs/webhook-secret/"
    #: Accept `http://` callback URLs (local only: refused inside Lambda whatever this says).
    webhook_allow_http: bool = False
    #: Accept callback URLs on loopback (127.0.0.0/8, ::1): local only, as webhook_allow_http.
    webhook_allow_loopback: bool = False
    #: How long after a job's end its webhook is retried (Standard Webhooks: a day is usual).
    webhook_retry_seconds: int = 86400
    #: Connect and read timeout of one delivery attempt (seconds).
    webhook_timeout_seconds: int = 5
    #: The sweeper enqueues an ended job's webhook that is not on the queue this long after the end
    #: (the worker died between its final write and the send, or SQS refused the send).
    webhook_resend_seconds: int = 60
    #: The sweeper sends again a queued webhook this long past due: its message must have been lost.
    webhook_lost_seconds: int = 900
    #: S3 buckets a job may read its input from (`csv-stats`); empty means any bucket, for local use.
    #: On AWS the worker's role can read only the service's input bucket, so a job naming another
    #: would fail at its first chunk: the list turns that into a 400 at submit.
    input_buckets: tuple[str, ...] = ()
    #: Largest file `POST /uploads` signs for (bytes): 1 GiB; at most 5 GiB, S3's limit for one POST.
    upload_max_bytes: int = 1024**3
    #: How long a signed upload stays usable (seconds).
    upload_expires_seconds: int = 900
    #: S3 bucket of the objects jobs store of their own (`jobs/<owner>/<job id>/...`); None: none.
    work_bucket: str | None = None
    #: Importable modules of the deployment's own job types, beside the built-ins (README: "Write
    #: your own job type").
    job_types: tuple[str, ...] = ()
    #: The tenants document (`s3://bucket/key`, written by the deploy and by `make run`): which
    #: client each API key id is and its plan's job limits (tenants.py). None: owners are keys, no limits.
    tenants_url: str | None = None
    #: How long a container keeps the tenants document before reading it again.
    tenants_ttl_seconds: int = 60
    #: Longest delay of a job put off for want of a running slot (maxRunningJobs, max_concurrency):
    #: 1 s for the first deferral, doubled per deferral in a row up to this (slots.py).
    defer_max_seconds: int = 16
    #: Unset on AWS; a LocalStack or moto endpoint elsewhere. boto3 also reads it by itself.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    #: How long the hot state of a finished job stays in Redis (polls keep hitting Redis).
    terminal_ttl_seconds: int = 3600
    #: Safety expiry of an active job's hot state, renewed at every checkpoint.
    active_ttl_seconds: int = 86400
    #: S3 bucket of results over INLINE_RESULT_BYTES (`results/<owner>/<job id>.json`); None: none,
    #: and such results stay in MySQL (up to its max_allowed_packet) and are not kept in Redis.
    results_bucket: str | None = None
    #: Results up to this size (bytes of JSON) are inline: in the row, in Redis and in the job's view.
    #: Larger ones go to RESULTS_BUCKET; well under Lambda's 6 MB response, so a GET always fits.
    inline_result_bytes: int = 256 * 1024
    #: The largest result a job may have (bytes of JSON); a larger one fails it (ResultTooLarge).
    result_max_bytes: int = 100 * 1024 * 1024
    #: How long the presigned URL of a result in S3 (`resultUrl`, the 303 of /result) is valid.
    result_url_seconds: int = 300
    #: A RUNNING job whose last checkpoint is older than this reads `stalled: true`.
    stall_after_seconds: int = 120
    max_body_bytes: int = 262144
    default_max_attempts: int = 3
    default_timeout_seconds: int = 3600
    #: A worker's hold on a job, renewed at every chunk: must outlive the longest chunk, and stay
    #: under the queue's visibility timeout minus the function timeout, so that the message of a
    #: killed worker, when it comes back, finds the lease expired.
    lease_seconds: int = 120
    #: First retry delay after a failed step; doubled per attempt, full jitter, capped at 900 s.
    retry_base_seconds: int = 2
    #: A job whose workers died this many times in a row while running the same chunk (killed, out
    #: of memory, past Lambda's time limit, an unexpected error) is FAILED instead of run again.
    max_deaths: int = 3
    #: First wait, in seconds, of a run whose dependency (S3, MySQL, Redis) is down; doubled per wait
    #: in a row, at most 60 s, until the job's timeoutSeconds. Waits never use up the job's attempts.
    dependency_wait_seconds: int = 5
    #: Time a hand-off itself needs (one MySQL UPDATE, one SQS send), kept free before the limit.
    handoff_reserve_ms: int = 3000
    #: The sweeper sends a PENDING job whose send failed (the row is the outbox) once it has waited this long.
    pending_resend_seconds: int = 120
    #: The sweeper sends again a PENDING job whose message went out but that has not started for this
    #: long (or a RUNNING job whose hand-off was not taken for this long): its message must have been
    #: lost. Hours, so that a backlog is never sent twice; keep it above the longest backlog expected
    #: and below the queue's retention (4 days by default).
    pending_lost_seconds: int = 6 * 3600
    #: Finished jobs (and their idempotency keys) are deleted this long after they ended.
    retention_seconds: int = 7 * 86400
    #: Bounds of one sweeper pass.
    sweep_max_rows: int = 500
    sweep_max_seconds: int = 30
    #: X-Ray subsegments around the use cases and job runs (see observability.py).
    tracing: bool = False

    @classmethod
    def from_env(cls, env=None) -> Settings:
        """Build settings from environment variables, falling back to local defaults."""
        env = os.environ if env is None else env
        d = cls()
        high_queue_name = env.get("JOBS_HIGH_QUEUE_NAME") or f"{env.get('JOBS_QUEUE_NAME', d.jobs_queue_name)}-high"
        return cls(
            mysql_url=env.get("MYSQL_URL", d.mysql_url),
            mysql_secret_arn=env.get("MYSQL_SECRET_ARN") or None,
            mysql_tls=_flag(env, "MYSQL_TLS"),
            mysql_tls_ca=env.get("MYSQL_TLS_CA") or None,
            redis_url=env.get("REDIS_URL", d.redis_url),
            redis_auth_token=env.get("REDIS_AUTH_TOKEN") or None,
            redis_auth_secret_arn=env.get("REDIS_AUTH_SECRET_ARN") or None,
            redis_prefix=env.get("REDIS_PREFIX", d.redis_prefix),
            jobs_queue_url=env.get("JOBS_QUEUE_URL", d.jobs_queue_url),
            jobs_queue_name=env.get("JOBS_QUEUE_NAME", d.jobs_queue_name),
            jobs_dlq_name=env.get("JOBS_DLQ_NAME") or f"{env.get('JOBS_QUEUE_NAME', d.jobs_queue_name)}-dlq",
            jobs_high_queue_url=env.get("JOBS_HIGH_QUEUE_URL", d.jobs_high_queue_url),
            jobs_high_queue_name=high_queue_name,
            jobs_high_dlq_name=env.get("JOBS_HIGH_DLQ_NAME") or f"{high_queue_name}-dlq",
            webhooks_queue_url=env.get("WEBHOOKS_QUEUE_URL", d.webhooks_queue_url),
            webhooks_queue_name=env.get("WEBHOOKS_QUEUE_NAME")
            or f"{env.get('JOBS_QUEUE_NAME', d.jobs_queue_name)}-webhooks",
            webhook_secret_prefix=env.get("WEBHOOK_SECRET_PREFIX", d.webhook_secret_prefix),
            webhook_allow_http=_flag(env, "WEBHOOK_ALLOW_HTTP"),
            webhook_allow_loopback=_flag(env, "WEBHOOK_ALLOW_LOOPBACK"),
            webhook_retry_seconds=_int(env, "WEBHOOK_RETRY_SECONDS", d.webhook_retry_seconds),
            webhook_timeout_seconds=_int(env, "WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_seconds),
            webhook_resend_seconds=_int(env, "WEBHOOK_RESEND_SECONDS", d.webhook_resend_seconds),
            webhook_lost_seconds=_int(env, "WEBHOOK_LOST_SECONDS", d.webhook_lost_seconds),
            input_buckets=_names(env, "INPUT_BUCKETS"),
            upload_max_bytes=_upload_max_bytes(env, d.upload_max_bytes),
            upload_expires_seconds=_int(env, "UPLOAD_EXPIRES_SECONDS", d.upload_expires_seconds),
            work_bucket=env.get("WORK_BUCKET") or None,
            tenants_url=env.get("TENANTS_URL") or None,
            tenants_ttl_seconds=_int(env, "TENANTS_TTL_SECONDS", d.tenants_ttl_seconds),
            defer_max_seconds=_int(env, "DEFER_MAX_SECONDS", d.defer_max_seconds),
            job_types=_names(env, "JOB_TYPES"),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or d.aws_region,
            terminal_ttl_seconds=_int(env, "TERMINAL_TTL_SECONDS", d.terminal_ttl_seconds),
            active_ttl_seconds=_int(env, "ACTIVE_TTL_SECONDS", d.active_ttl_seconds),
            results_bucket=env.get("RESULTS_BUCKET") or None,
            inline_result_bytes=_int(env, "INLINE_RESULT_BYTES", d.inline_result_bytes),
            result_max_bytes=_int(env, "RESULT_MAX_BYTES", d.result_max_bytes),
            result_url_seconds=_int(env, "RESULT_URL_SECONDS", d.result_url_seconds),
            stall_after_seconds=_int(env, "STALL_AFTER_SECONDS", d.stall_after_seconds),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", d.max_body_bytes),
            default_max_attempts=_int(env, "DEFAULT_MAX_ATTEMPTS", d.default_max_attempts),
            default_timeout_seconds=_int(env, "DEFAULT_TIMEOUT_SECONDS", d.default_timeout_seconds),
            lease_seconds=_int(env, "LEASE_SECONDS", d.lease_seconds),
            retry_base_seconds=_int(env, "RETRY_BASE_SECONDS", d.retry_base_seconds),
            max_deaths=_int(env, "MAX_DEATHS", d.max_deaths),
            dependency_wait_seconds=_int(env, "DEPENDENCY_WAIT_SECONDS", d.dependency_wait_seconds),
            handoff_reserve_ms=_int(env, "HANDOFF_RESERVE_MS", d.handoff_reserve_ms),
            pending_resend_seconds=_int(env, "PENDING_RESEND_SECONDS", d.pending_resend_seconds),
            pending_lost_seconds=_int(env, "PENDING_LOST_SECONDS", d.pending_lost_seconds),
            retention_seconds=_retention(env, d.retention_seconds),
            sweep_max_rows=_int(env, "SWEEP_MAX_ROWS", d.sweep_max_rows),
            sweep_max_seconds=_int(env, "SWEEP_MAX_SECONDS", d.sweep_max_seconds),
            tracing=tracing_on(env),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that make `from_env` give these settings back (secrets included)."""
        return {
            "MYSQL_URL": self.mysql_url,
            "MYSQL_SECRET_ARN": self.mysql_secret_arn or "",
            "MYSQL_TLS": _on_off(self.mysql_tls),
            "MYSQL_TLS_CA": self.mysql_tls_ca or "",
            "REDIS_URL": self.redis_url,
            "REDIS_AUTH_TOKEN": self.redis_auth_token or "",
            "REDIS_AUTH_SECRET_ARN": self.redis_auth_secret_arn or "",
            "REDIS_PREFIX": self.redis_prefix,
            "JOBS_QUEUE_URL": self.jobs_queue_url,
            "JOBS_QUEUE_NAME": self.jobs_queue_name,
            "JOBS_DLQ_NAME": self.jobs_dlq_name,
            "JOBS_HIGH_QUEUE_URL": self.jobs_high_queue_url,
            "JOBS_HIGH_QUEUE_NAME": self.jobs_high_queue_name,
            "JOBS_HIGH_DLQ_NAME": self.jobs_high_dlq_name,
            "WEBHOOKS_QUEUE_URL": self.webhooks_queue_url,
            "WEBHOOKS_QUEUE_NAME": self.webhooks_queue_name,
            "WEBHOOK_SECRET_PREFIX": self.webhook_secret_prefix,
            "WEBHOOK_ALLOW_HTTP": _on_off(self.webhook_allow_http),
            "WEBHOOK_ALLOW_LOOPBACK": _on_off(self.webhook_allow_loopback),
            "WEBHOOK_RETRY_SECONDS": str(self.webhook_retry_seconds),
            "WEBHOOK_TIMEOUT_SECONDS": str(self.webhook_timeout_seconds),
            "WEBHOOK_RESEND_SECONDS": str(self.webhook_resend_seconds),
            "WEBHOOK_LOST_SECONDS": str(self.webhook_lost_seconds),
            "INPUT_BUCKETS": ",".join(self.input_buckets),
            "UPLOAD_MAX_BYTES": str(self.upload_max_bytes),
            "UPLOAD_EXPIRES_SECONDS": str(self.upload_expires_seconds),
            "WORK_BUCKET": self.work_bucket or "",
            "TENANTS_URL": self.tenants_url or "",
            "TENANTS_TTL_SECONDS": str(self.tenants_ttl_seconds),
            "DEFER_MAX_SECONDS": str(self.defer_max_seconds),
            "JOB_TYPES": ",".join(self.job_types),
            "AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            # from_env prefers AWS_REGION to AWS_DEFAULT_REGION: setting the first wins either way.
            "AWS_REGION": self.aws_region,
            "TERMINAL_TTL_SECONDS": str(self.terminal_ttl_seconds),
            "ACTIVE_TTL_SECONDS": str(self.active_ttl_seconds),
            "RESULTS_BUCKET": self.results_bucket or "",
            "INLINE_RESULT_BYTES": str(self.inline_result_bytes),
            "RESULT_MAX_BYTES": str(self.result_max_bytes),
            "RESULT_URL_SECONDS": str(self.result_url_seconds),
            "STALL_AFTER_SECONDS": str(self.stall_after_seconds),
            "MAX_BODY_BYTES": str(self.max_body_bytes),
            "DEFAULT_MAX_ATTEMPTS": str(self.default_max_attempts),
            "DEFAULT_TIMEOUT_SECONDS": str(self.default_timeout_seconds),
            "LEASE_SECONDS": str(self.lease_seconds),
            "RETRY_BASE_SECONDS": str(self.retry_base_seconds),
            "MAX_DEATHS": str(self.max_deaths),
            "DEPENDENCY_WAIT_SECONDS": str(self.dependency_wait_seconds),
            "HANDOFF_RESERVE_MS": str(self.handoff_reserve_ms),
            "PENDING_RESEND_SECONDS": str(self.pending_resend_seconds),
            "PENDING_LOST_SECONDS": str(self.pending_lost_seconds),
            "RETENTION_SECONDS": str(self.retention_seconds),
            "SWEEP_MAX_ROWS": str(self.sweep_max_rows),
            "SWEEP_MAX_SECONDS": str(self.sweep_max_seconds),
            "TRACING": _on_off(self.tracing),
        }


def _retention(env, default: int) -> int:
    # Idempotency keys live as long as their row, and the API promises at least 24 hours.
    value = _int(env, "RETENTION_SECONDS", default)
    if value < 86400:
        raise ValueError(f"RETENTION_SECONDS must be at least 86400 (idempotency keys are kept 24 h), got {value}")
    return value


def _upload_max_bytes(env, default: int) -> int:
    # S3 takes at most 5 GiB in one PUT or POST; larger files need a multipart upload.
    value = _int(env, "UPLOAD_MAX_BYTES", default)
    if not 0 < value <= 5 * 1024**3:
        raise ValueError(f"UPLOAD_MAX_BYTES must be from 1 to {5 * 1024**3} (S3's limit for one upload), got {value}")
    return value
