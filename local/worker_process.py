"""The worker Lambda as a process of its own, fed by the event-source emulation from a queue.

Tests and bench/chaos.py start several and kill them (SIGKILL) to see how the system survives.
Settings come from the environment, as in Lambda (`environment()` builds it from `Settings.to_env`).
Job types beyond the built-ins come from the settings' JOB_TYPES (the tests' `probe`); CHUNK_LOG
makes every job type record each chunk it starts as "pid job_id state-digest unix-time" lines (the
same digest twice for a job = a chunk redone). DUPLICATE_CONTINUATIONS=N sends the first and then
every Nth continuation (a message that carries a lease) of the process twice, as SQS's
at-least-once delivery may, and logs "continuation duplicated" for each. DIE_AFTER_FINAL_WRITE=1
kills the process (os._exit) right after the first final UPDATE of a job that it wins, before
anything else is done about the job's end (its webhook queued, above all).

With `--priority high` it is the high-priority worker (`run_high_jobs`), fed from the high-priority queue.

    JOB_TYPES=tests.support.probe python -m local.worker_process --function-timeout 60
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from chalicelib.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment that makes Settings.from_env() give these settings."""
    return {**os.environ, **settings.to_env(), "POWERTOOLS_LOG_LEVEL": "WARNING", **extra}


def start(
    settings: Settings,
    *,
    function_timeout: float = 60.0,
    batch_size: int = 10,
    priority: str = "normal",
    output: Path | None = None,
    **env: str,
) -> subprocess.Popen:
    """A worker process polling the settings' queue (the high-priority one for `priority` "high");
    the caller stops (or kills) it.

    `output` receives its stdout and stderr (JSON log lines and EMF metrics), else they are dropped;
    `env` adds variables.
    """
    sink = output.open("ab") if output else subprocess.DEVNULL
    command = [
        sys.executable,
        "-m",
        "local.worker_process",
        "--function-timeout",
        str(function_timeout),
        "--batch-size",
        str(batch_size),
        "--priority",
        priority,
    ]
    return subprocess.Popen(command, cwd=ROOT, env=environment(settings, **env), stdout=sink, stderr=subprocess.STDOUT)


def _count_chunks(directory: str) -> None:
    """Record every chunk any job type starts in this process, keyed by job id and state."""
    import hashlib
    import json

    from chalicelib.worker import Worker

    resume = Worker._resume
    path = Path(directory) / f"chunks-{os.getpid()}"

    class Counting:
        def __init__(self, job_type, job_id):
            self._job_type, self._job_id = job_type, job_id

        def __getattr__(self, name):
            return getattr(self._job_type, name)

        def step(self, payload, state, ctx):
            digest = hashlib.sha1(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
            with path.open("a") as out:
                out.write(f"{os.getpid()} {self._job_id} {digest} {time.time():.3f}\n")
            return self._job_type.step(payload, state, ctx)

    def counted_resume(self, job, token, checkpoint, invocation):
        run = resume(self, job, token, checkpoint, invocation)
        run.job_type = Counting(run.job_type, job.id)
        return run

    Worker._resume = counted_resume


def _duplicate_continuations(every: int) -> None:
    """Send the first and then every `every`th message that carries a lease twice (the same body)."""
    import itertools

    from chalicelib.observability import logger
    from chalicelib.queue import JobQueue

    send, count = JobQueue.send_job, itertools.count()

    def send_twice(self, job_id, **kwargs):
        message_id = send(self, job_id, **kwargs)
        if kwargs.get("lease") and next(count) % every == 0:
            send(self, job_id, **kwargs)
            logger.warning("continuation duplicated", extra={"job_id": job_id})
        return message_id

    JobQueue.send_job = send_twice


def _die_after_final_write() -> None:
    """Exit at once, as a kill would, right after a final UPDATE of a job has committed."""
    from chalicelib.store import JobStore

    transition = JobStore.transition

    def transition_then_die(self, job_id, *, to, **kwargs):
        won = transition(self, job_id, to=to, **kwargs)
        if won and to.terminal:
            os._exit(137)
        return won

    JobStore.transition = transition_then_die


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--function-timeout", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--priority", choices=("normal", "high"), default="normal")
    ns = parser.parse_args()
    from local import services
    from local.eventsource import EventSource

    services.use_fake_aws_credentials()
    import app

    if os.environ.get("CHUNK_LOG"):
        _count_chunks(os.environ["CHUNK_LOG"])
    if os.environ.get("DUPLICATE_CONTINUATIONS"):
        _duplicate_continuations(int(os.environ["DUPLICATE_CONTINUATIONS"]))
    if os.environ.get("DIE_AFTER_FINAL_WRITE"):
        _die_after_final_write()
    settings = Settings.from_env()
    sqs = services.sqs_client(settings.aws_endpoint_url, settings.aws_region)
    url, handler = (
        (settings.jobs_high_queue_url, app.run_high_jobs)
        if ns.priority == "high"
        else (settings.jobs_queue_url, app.run_jobs)
    )
    source = EventSource(sqs, url, handler, batch_size=ns.batch_size, function_timeout=ns.function_timeout)
    while True:
        source.poll_once(wait_seconds=1)


if __name__ == "__main__":
    main()
