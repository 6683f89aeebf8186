"""The worker Lambda as a process of its own, fed by the event-source emulation from the test's queue.

Tests start several and kill them (SIGKILL) to see how the system survives. Settings come from the
environment, as in Lambda (`environment()` builds it); PROBE_LOG makes the probe job type record
every chunk it starts to a file, with the process id.

    python -m tests.support.worker_process --function-timeout 60
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from chalicelib.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment that makes Settings.from_env() give these settings."""
    return {
        **os.environ,
        "MYSQL_URL": settings.mysql_url, "REDIS_URL": settings.redis_url, "REDIS_PREFIX": settings.redis_prefix,
        "JOBS_QUEUE_URL": settings.jobs_queue_url, "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "LEASE_SECONDS": str(settings.lease_seconds), "HANDOFF_RESERVE_MS": str(settings.handoff_reserve_ms),
        "RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
        "STALL_AFTER_SECONDS": str(settings.stall_after_seconds),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **extra,
    }


def start(settings: Settings, *, probe_log: Path, function_timeout: float = 60.0,
          batch_size: int = 10) -> subprocess.Popen:
    """A worker process polling the settings' queue; the caller stops (or kills) it."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", "--function-timeout", str(function_timeout),
         "--batch-size", str(batch_size)],
        cwd=ROOT, env=environment(settings, PROBE_LOG=str(probe_log)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--function-timeout", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=10)
    ns = parser.parse_args()
    from local import services
    from local.eventsource import EventSource

    services.use_fake_aws_credentials()
    import app
    import tests.support.probe  # noqa: F401  (registers the probe job type)

    settings = Settings.from_env()
    sqs = services.sqs_client(settings.aws_endpoint_url, settings.aws_region)
    source = EventSource(sqs, settings.jobs_queue_url, app.run_jobs, batch_size=ns.batch_size,
                         function_timeout=ns.function_timeout)
    while True:
        source.poll_once(wait_seconds=1)


if __name__ == "__main__":
    main()
