"""`jobs`: the command-line client of the API, built on the Python client (client/, jobs_client).

    jobs submit TYPE [--payload JSON] [--wait]   submit; with --wait, a live progress bar, then the result
    jobs submit TYPE --input FILE ...            upload FILE first, then submit with its bucket and key
    jobs upload FILE                             upload a file for jobs to read; prints its key
    jobs status ID [ID ...] | jobs cancel ID     one job (its JSON); several: a table, in one request
    jobs list [--status S] [--type T] [--limit N | --all]   your jobs, newest first, page after page
    jobs watch [--once]                          a live table of your recent jobs, with counts by status
    jobs limits                                  your plan's job limits and your unfinished jobs
    jobs demo                                    submit a few jobs, cancel one, show the outcome
    jobs check-type MODULE:NAME --payload JSON   prove a job type is safe to redo (local, no API)

The API's URL and key come from --url / --key or JOBS_API_URL / JOBS_API_KEY. The client paces its
polls by the API's Retry-After and answers a 429 by waiting (exponential backoff with jitter), so
the basic plan's 5 requests a second are enough for every command. An error prints the API's
message and exits 1; a job that ends FAILED or CANCELLED under --wait exits 1 too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from jobs_client import ApiError, Client, Job, JobsError, JobStatus, Limits

from local import checktype

#: Seconds `demo` waits for its last job to start before cancelling it anyway (it may queue for a slot).
DEMO_START_SECONDS = 30


def describe(exc: JobsError) -> str:
    """`400: InvalidJobId 'x' is not a job id`; API Gateway's own answers (no code) as `403: Forbidden`."""
    if not isinstance(exc, ApiError):
        return str(exc)
    has_code = isinstance(exc.body, dict) and "code" in exc.body
    return f"{exc.status}: {exc.code} {exc.message}".strip() if has_code else f"{exc.status}: {exc.message}"


def progress_line(job: Job, width: int = 30) -> str:
    """`[#########.....................]  30%  RUNNING  step 9 of 30  eta 12s`"""
    filled = job.progress * width // 100
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {job.progress:3d}%", job.status.value]
    if job.message:
        parts.append(job.message)
    if job.eta_seconds is not None and not job.terminal:
        parts.append(f"eta {job.eta_seconds}s")
    if job.stalled:
        parts.append("(stalled)")
    return "  ".join(parts)


class ProgressBar:
    """Draws a job's progress on stderr as `wait` reports it: one line redrawn on a terminal."""

    def __init__(self) -> None:
        self.tty, self.last = sys.stderr.isatty(), None

    def __call__(self, job: Job) -> None:
        line = progress_line(job)
        if line != self.last:
            sys.stderr.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
            sys.stderr.flush()
            self.last = line
        if job.terminal and self.tty:
            sys.stderr.write("\n")


def _created(job: Job) -> str:
    return job.raw.get("createdAt") or ""


def table(jobs: list[Job]) -> str:
    """Jobs as rows; the type column as wide as the longest type name (never cut)."""
    width = max([4, *(len(job.type) for job in jobs)])
    rows = [f"{'JOB':26}  {'TYPE':{width}}  {'STATUS':9}  {'PROGRESS':>8}  {'CREATED':24}  MESSAGE"]
    for job in jobs:
        rows.append(
            f"{job.id:26}  {job.type:{width}}  {job.status.value:9}  {job.progress:7d}%  "
            f"{_created(job):24}  {(job.error or job.message or '')[:40]}"
        )
    return "\n".join(rows)


def status_counts(jobs: Iterable[Job]) -> str:
    """`2 RUNNING, 1 PENDING, 12 COMPLETED`: the jobs by status, in lifecycle order."""
    counts = Counter(job.status for job in jobs)
    order = [status for status in JobStatus if status in counts] + [s for s in counts if s not in set(JobStatus)]
    return ", ".join(f"{counts[status]} {status.value}" for status in order) or "none"


def limits_text(limits: Limits) -> str:
    """`client demo, plan basic: 3 of 50 unfinished jobs (1 pending, 2 running); ...` from GET /limits."""
    held = f" of which {limits.held_jobs} held for a free slot" if limits.held_jobs else ""
    scheduled = f"{limits.scheduled_jobs} scheduled, " if limits.scheduled_jobs else ""
    counts = f"{scheduled}{limits.pending_jobs} pending{held}, {limits.running_jobs} running"
    if limits.max_active_jobs is None:
        return f"client {limits.client}: {limits.active_jobs} unfinished jobs ({counts}); no limits"
    return (
        f"client {limits.client}, plan {limits.plan}: {limits.active_jobs} of {limits.max_active_jobs}"
        f" unfinished jobs ({counts}); at most {limits.max_running_jobs} running at once;"
        f" timeoutSeconds up to {limits.max_timeout_seconds}"
    )


DEMO = [
    ("a short job", {"type": "sleep", "payload": {"steps": 5, "stepMs": 200}}),
    ("a longer one", {"type": "sleep", "payload": {"steps": 20, "stepMs": 250}}),
    ("one that fails at step 3", {"type": "sleep", "payload": {"steps": 6, "stepMs": 200, "failAtStep": 3}}),
    # The payload's bucket and key come from uploading the sample CSV (demo() does it).
    ("statistics of the sample CSV", {"type": "csv-stats", "payload": {"chunkBytes": 262144}}),
    ("one to cancel", {"type": "sleep", "payload": {"steps": 100, "stepMs": 200}}),
]


def demo(client: Client) -> int:
    """Upload the sample CSV, submit the DEMO jobs, cancel the last once it runs, wait for all (one
    request per poll for all five, paced by Retry-After), print the outcome."""
    import tempfile

    from local.run import sample_csv

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sales.csv"
        path.write_bytes(sample_csv())
        upload = client.upload(path)
    print(f"uploaded the sample CSV to s3://{upload.bucket}/{upload.key}")
    jobs = []
    for what, body in DEMO:
        payload = body["payload"]
        if body["type"] == "csv-stats":
            payload = {**payload, "bucket": upload.bucket, "key": upload.key}
        job = client.submit(body["type"], payload)
        print(f"submitted {what}: {job.id}")
        jobs.append(job)
    last, deadline = jobs[-1], time.monotonic() + DEMO_START_SECONDS
    while last.status is JobStatus.PENDING and time.monotonic() < deadline:
        time.sleep(last.retry_after or 1)
        last = client.get(last)
    cancelled = client.cancel(last)
    print(f"cancel requested for {last.id} (status {cancelled.status.value}); waiting for all to end...")
    ended = client.wait_all(jobs)
    print()
    print(table(ended))
    for job in ended:
        if job.status is JobStatus.COMPLETED:
            print(f"{job.id} result: {json.dumps(client.result(job))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.command == "check-type":
        return checktype.run(ns)
    try:
        with Client(ns.url, ns.key) as client:
            return COMMANDS[ns.command](client, ns)
    except JobsError as exc:
        print(f"jobs: {describe(exc)}", file=sys.stderr)
        return 1
    except (OSError, UsageError) as exc:  # a file to upload that cannot be read; a bad --payload
        print(f"jobs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class UsageError(Exception):
    """An argument the command cannot use."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobs", description="Submit, watch and cancel jobs.")
    parser.add_argument("--url", default=os.environ.get("JOBS_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("JOBS_API_KEY"))
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("type")
    submit.add_argument("--payload", default="{}", help="the payload, as JSON")
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--timeout-seconds", type=int)
    submit.add_argument("--idempotency-key", help="default: one made for this submission (its retries are safe)")
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="RFC3339", help="start no earlier than this, e.g. 2026-12-24T18:00:00+01:00")
    when.add_argument("--delay", type=int, metavar="SECONDS", help="start this many seconds from now")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends, then its result")
    submit.add_argument("--input", metavar="FILE", help="upload FILE and set the payload's bucket and key to it")
    commands.add_parser("upload", help="upload a file for jobs to read; prints its key").add_argument("file")
    status = commands.add_parser("status", help="one job's JSON; of several ids, a table (one GET /jobs?ids=)")
    status.add_argument("id", nargs="+")
    commands.add_parser("cancel", help="cancel one job").add_argument("id")
    listing = commands.add_parser("list", help="your jobs, newest first, page after page")
    listing.add_argument("--status")
    listing.add_argument("--type")
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument("--limit", type=int, default=20, help="show this many (default 20; pages of up to 100)")
    shown.add_argument("--all", action="store_true", help="show every one of your jobs")
    commands.add_parser("limits", help="your plan's job limits and how many of your jobs are unfinished")
    commands.add_parser("demo", help="submit a few jobs, cancel one, show the outcome")
    watch = commands.add_parser("watch", help="a live table of your recent jobs, with counts by status")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (two requests each)")
    watch.add_argument("--limit", type=int, default=15)
    watch.add_argument("--once", action="store_true", help="print one screen and exit")
    checktype.add_parser(commands)
    return parser


def _submit(client: Client, ns: argparse.Namespace) -> int:
    try:
        payload = json.loads(ns.payload)
    except ValueError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from None
    if ns.input:
        upload = client.upload(ns.input)
        print(f"uploaded {ns.input} to s3://{upload.bucket}/{upload.key}", file=sys.stderr)
        payload = {**payload, "bucket": upload.bucket, "key": upload.key}
    job = client.submit(
        ns.type,
        payload,
        max_attempts=ns.max_attempts,
        timeout_seconds=ns.timeout_seconds,
        idempotency_key=ns.idempotency_key,
        run_at=ns.at,
        delay_seconds=ns.delay,
    )
    if not ns.wait:
        print(json.dumps(job.raw, indent=2))
        return 0
    print(f"job {job.id}", file=sys.stderr)
    job = client.wait(job, on_progress=ProgressBar())
    if job.status is JobStatus.COMPLETED:
        print(json.dumps(client.result(job) if job.result_url else job.result, indent=2))
        return 0
    print(f"jobs: job {job.id} {job.status.value}: {job.error or job.message or ''}", file=sys.stderr)
    return 1


def _status(client: Client, ns: argparse.Namespace) -> int:
    if len(ns.id) > 1:
        print(table(client.get_many(ns.id)))  # the caller's among them: others' and unknown ids are left out
        return 0
    print(json.dumps(client.get(ns.id[0]).raw, indent=2))
    return 0


def _cancel(client: Client, ns: argparse.Namespace) -> int:
    print(json.dumps(client.cancel(ns.id).raw, indent=2))
    return 0


def _list(client: Client, ns: argparse.Namespace) -> int:
    limit = None if ns.all else ns.limit
    page_size = 100 if limit is None else max(1, min(100, limit))
    print(table(list(client.list(status=ns.status, type=ns.type, page_size=page_size, limit=limit))))
    return 0


def _limits(client: Client, ns: argparse.Namespace) -> int:
    print(limits_text(client.limits()))
    return 0


def _upload(client: Client, ns: argparse.Namespace) -> int:
    upload = client.upload(ns.file)
    print(f"uploaded to s3://{upload.bucket}/{upload.key}", file=sys.stderr)
    print(upload.key)
    return 0


def watch_screen(client: Client, limit: int) -> str:
    """One screen of `watch`: counts by status of the recent jobs and of all unfinished ones, then the table."""
    recent = client.page(limit=limit).jobs
    limits = client.limits()
    return (
        f"{client.url}   {time.strftime('%H:%M:%S')}   Ctrl-C to stop\n"
        f"latest {len(recent)}: {status_counts(recent)}\n"
        f"unfinished in all: {limits.active_jobs} ({limits.pending_jobs} pending, {limits.running_jobs} running)\n\n"
        f"{table(recent)}"
    )


def _watch(client: Client, ns: argparse.Namespace) -> int:
    while True:
        screen = watch_screen(client, ns.limit)
        sys.stdout.write(("\x1b[H\x1b[2J" + screen + "\n") if sys.stdout.isatty() else screen + "\n\n")
        sys.stdout.flush()
        if ns.once:
            return 0
        time.sleep(ns.interval)


COMMANDS = {
    "submit": _submit,
    "status": _status,
    "cancel": _cancel,
    "list": _list,
    "limits": _limits,
    "demo": lambda client, ns: demo(client),
    "upload": _upload,
    "watch": _watch,
}


if __name__ == "__main__":
    sys.exit(main())
