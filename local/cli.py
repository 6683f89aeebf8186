"""`jobs`: the command-line client of the API, built on the Python client (client/, jobs_client).

    jobs submit TYPE [--payload JSON] [--wait]   submit; with --wait, a live progress bar, then the result
    jobs submit TYPE --input FILE ...            upload FILE first, then submit with its bucket and key
    jobs submit TYPE --depends-on ID ...         WAITING until that job completed (repeatable)
    jobs batch FILE.jsonl [--then JSON] [--wait] one job spec a line, as one batch; --wait: one live bar
    jobs batch-status ID | jobs batch-cancel ID  a batch's status and counts; cancel its unfinished jobs
    jobs upload FILE                             upload a file for jobs to read; prints its key
    jobs status ID [ID ...] | jobs cancel ID     one job (its JSON, and its webhook's deliveries); several: a table
    jobs cancel --status S [--type T] | --type T  cancel all your unfinished jobs that match; prints how many
    jobs retry ID [--from-start] [--wait]        run a FAILED or CANCELLED job again, from its last checkpoint
    jobs deliveries ID                           the attempts to deliver a job's webhook, as JSON
    jobs webhook-secret                          your webhook signing secret (whsec_...)
    jobs list [--status S] [--type T] [--limit N | --all]   your jobs, newest first, page after page
    jobs watch [--once]                          a live table of your recent jobs, with counts by status
    jobs limits                                  your plan's job limits and your unfinished jobs
    jobs schedule add|list|pause|resume|rm       recurring schedules (cron in a time zone): local/schedule_cli.py
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jobs_client import ApiError, Batch, Client, Delivery, Job, JobsError, JobStatus, Limits

from local import checktype, schedule_cli

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


def batch_line(batch: Batch, width: int = 30) -> str:
    """`[#########.....................]  30%  RUNNING  3 of 10 ended (2 completed, 1 failed)  then WAITING`"""
    filled = batch.progress * width // 100
    total = sum(batch.counts.values())
    ended = {name.lower(): n for name, n in batch.counts.items() if n and JobStatus(name).terminal}
    detail = ", ".join(f"{n} {name}" for name, n in ended.items())
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {batch.progress:3d}%", batch.status.value]
    parts.append(f"{sum(ended.values())} of {total} ended" + (f" ({detail})" if detail else ""))
    if batch.then_status is not None:
        parts.append(f"then {batch.then_status.value}")
    return "  ".join(parts)


class ProgressBar:
    """Draws a job's (or a batch's) progress on stderr as `wait` reports it: one line redrawn on a terminal."""

    def __init__(self, line: Callable[[Any], str] = progress_line) -> None:
        self.tty, self.last, self.line = sys.stderr.isatty(), None, line

    def __call__(self, job: Job | Batch) -> None:
        line = self.line(job)
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
    scheduled += f"{limits.waiting_jobs} waiting, " if limits.waiting_jobs else ""
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
    try:
        cancelled = client.cancel(last)
        print(f"cancel requested for {last.id} (status {cancelled.status.value}); waiting for all to end...")
    except ApiError as exc:  # it ran to its end while it waited for a slot: nothing left to cancel
        if exc.code != "JobFinished":
            raise
        print(f"{last.id} finished before the cancel ({exc.message}); waiting for all to end...")
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
    except (OSError, UsageError) as exc:  # a file that cannot be read; a bad --payload
        print(f"jobs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


#: An argument a command cannot use (a bad --payload): printed, exit 1.
UsageError = schedule_cli.UsageError
_json_arg = schedule_cli.json_arg


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
    submit.add_argument("--callback-url", help="where a signed webhook goes when the job ends")
    submit.add_argument(
        "--priority", choices=("high", "normal"), help="high: its own queue, ahead of a backlog (default normal)"
    )
    submit.add_argument(
        "--depends-on", action="append", metavar="ID", help="wait for this job to complete first (repeatable)"
    )
    batch = commands.add_parser("batch", help="submit the job specs of a JSON-lines file as one batch")
    batch.add_argument("file", help='one job spec per line: {"type": ..., "payload": ..., "dependsOn": [index]}')
    batch.add_argument("--then", metavar="JSON", help="a job spec run once after every job of the batch ended")
    batch.add_argument("--then-on-failure", choices=("cancel", "run"), help="when a job failed (default: cancel)")
    batch.add_argument("--wait", action="store_true", help="one live bar for the batch until it ends")
    commands.add_parser("batch-status", help="a batch's JSON (status, counts, then)").add_argument("id")
    commands.add_parser("batch-cancel", help="cancel every unfinished job of a batch").add_argument("id")
    commands.add_parser("upload", help="upload a file for jobs to read; prints its key").add_argument("file")
    status = commands.add_parser("status", help="one job's JSON; of several ids, a table (one GET /jobs?ids=)")
    status.add_argument("id", nargs="+")
    cancel = commands.add_parser("cancel", help="cancel one job, or all of yours that match --status/--type")
    cancel.add_argument("id", nargs="?")
    cancel.add_argument("--status", help="cancel your unfinished jobs in this status (PENDING, SCHEDULED, RUNNING)")
    cancel.add_argument("--type", help="cancel your unfinished jobs of this type")
    retry = commands.add_parser("retry", help="run a FAILED or CANCELLED job again under its id")
    retry.add_argument("id")
    retry.add_argument("--from-start", action="store_true", help="discard its checkpoint: run every chunk again")
    retry.add_argument("--wait", action="store_true", help="show progress until the job ends, then its result")
    commands.add_parser("deliveries", help="the attempts to deliver a job's webhook, as JSON").add_argument("id")
    commands.add_parser("webhook-secret", help="your webhook signing secret, to verify deliveries")
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
    schedule_cli.add_parser(commands)
    checktype.add_parser(commands)
    return parser


def _submit(client: Client, ns: argparse.Namespace) -> int:
    payload = _json_arg(ns.payload, "--payload")
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
        callback_url=ns.callback_url,
        priority=ns.priority,
        depends_on=ns.depends_on,
    )
    return _shown(client, job, wait=ns.wait)


def _shown(client: Client, job: Job, *, wait: bool) -> int:
    """Print the job's JSON; with `wait`, a progress bar until it ends, then its result (exit 1 if
    it did not complete)."""
    if not wait:
        print(json.dumps(job.raw, indent=2))
        return 0
    print(f"job {job.id}", file=sys.stderr)
    job = client.wait(job, on_progress=ProgressBar())
    if job.status is JobStatus.COMPLETED:
        print(json.dumps(client.result(job) if job.result_url else job.result, indent=2))
        return 0
    print(f"jobs: job {job.id} {job.status.value}: {job.error or job.message or ''}", file=sys.stderr)
    return 1


def _batch(client: Client, ns: argparse.Namespace) -> int:
    with open(ns.file) as lines:
        specs = [_json_arg(line, f"{ns.file} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    then = None if ns.then is None else _json_arg(ns.then, "--then")
    submitted = client.submit_batch(specs, then=then, then_on_failure=ns.then_on_failure)
    if not ns.wait:
        print(
            json.dumps({"batchId": submitted.batch_id, "jobIds": submitted.job_ids, "thenJobId": submitted.then_job_id})
        )
        return 0
    print(f"batch {submitted.batch_id} of {len(submitted.job_ids)} jobs", file=sys.stderr)
    batch = client.wait_batch(submitted.batch_id, on_progress=ProgressBar(batch_line))
    print(json.dumps(batch.raw, indent=2))
    return 0 if batch.status is JobStatus.COMPLETED else 1


def _status(client: Client, ns: argparse.Namespace) -> int:
    if len(ns.id) > 1:
        print(table(client.get_many(ns.id)))  # the caller's among them: others' and unknown ids are left out
        return 0
    job = client.get(ns.id[0])
    print(json.dumps(job.raw, indent=2))
    if job.terminal:
        made = client.deliveries(job)
        if made:  # a job with a callback: how its webhook went, where one looks for the job's outcome
            print("\nwebhook deliveries:\n" + deliveries_table(made))
    return 0


def deliveries_table(made: list[Delivery]) -> str:
    """One line per attempt: number, time, status or error, next retry."""
    lines = []
    for d in made:
        at = d.at.strftime("%Y-%m-%d %H:%M:%S") if d.at else "-"
        outcome = f"{d.status_code}" if d.status_code is not None else "-"
        then = (
            f"next retry {d.next_retry_at:%H:%M:%S}"
            if d.next_retry_at
            else ("delivered" if d.delivered else "no retry")
        )
        lines.append(f"  #{d.attempt:<3} {at}  {outcome:>3}  {then}" + (f"  {d.error}" if d.error else ""))
    return "\n".join(lines)


def _deliveries(client: Client, ns: argparse.Namespace) -> int:
    print(
        json.dumps(
            {
                "deliveries": [
                    d.__dict__
                    | {
                        "at": d.at and d.at.isoformat(),
                        "next_retry_at": d.next_retry_at and d.next_retry_at.isoformat(),
                    }
                    for d in client.deliveries(ns.id)
                ]
            },
            indent=2,
        )
    )
    return 0


def _cancel(client: Client, ns: argparse.Namespace) -> int:
    if ns.id is not None and (ns.status or ns.type):
        raise UsageError("give a job id or --status/--type, not both")
    if ns.id is not None:
        print(json.dumps(client.cancel(ns.id).raw, indent=2))
        return 0
    if not (ns.status or ns.type):
        raise UsageError("give a job id, or --status and/or --type to cancel all that match")
    print(f"cancelled {client.cancel_many(status=ns.status, type=ns.type)} jobs")
    return 0


def _retry(client: Client, ns: argparse.Namespace) -> int:
    return _shown(client, client.retry_job(ns.id, from_start=ns.from_start), wait=ns.wait)


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
    "retry": _retry,
    "list": _list,
    "limits": _limits,
    "demo": lambda client, ns: demo(client),
    "upload": _upload,
    "watch": _watch,
    "deliveries": _deliveries,
    "batch": _batch,
    "batch-status": lambda client, ns: print(json.dumps(client.batch(ns.id).raw, indent=2)) or 0,
    "batch-cancel": lambda client, ns: print(json.dumps(client.cancel_batch(ns.id).raw, indent=2)) or 0,
    "webhook-secret": lambda client, ns: print(client.webhook_secret()) or 0,
    "schedule": schedule_cli.run,
}


if __name__ == "__main__":
    sys.exit(main())
