"""`jobs`: the command-line client of the API (not part of the Lambda package).

    jobs submit TYPE [--payload JSON] [--wait]   submit; with --wait, a live progress bar, then the result
    jobs submit TYPE --input FILE ...            upload FILE first, then submit with its bucket and key
    jobs upload FILE                             upload a file for jobs to read; prints its key
    jobs status ID | jobs cancel ID              one job
    jobs list [--status S] [--type T]            your jobs, newest first
    jobs watch                                   a live table of your recent jobs
    jobs demo                                    submit a few jobs, cancel one, show the outcome
    jobs check-type MODULE:NAME --payload JSON   prove a job type is safe to redo (local, no API)

The API's URL and key come from --url / --key or JOBS_API_URL / JOBS_API_KEY. An error prints the
API's message and exits 1; a job that ends FAILED or CANCELLED under --wait exits 1 too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from local import checktype

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class ApiError(Exception):
    """The API answered with an error (or could not be reached)."""


class Client:
    """The API over HTTP, with urllib only."""

    def __init__(self, url: str, key: str | None):
        self.url = url.rstrip("/")
        self.key = key

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "content-type": "application/json",
                **({"x-api-key": self.key} if self.key else {}),
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{exc.code}: {_message(exc.read())}") from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach {self.url}: {exc.reason}") from None

    def upload(self, path: str) -> dict[str, Any]:
        """Upload a file through POST /uploads and its presigned POST; the API's answer (bucket, key)."""
        import mimetypes

        data = Path(path).read_bytes()
        body: dict[str, Any] = {"filename": Path(path).name, "bytes": len(data)}
        content_type = mimetypes.guess_type(path)[0]
        if content_type:
            body["contentType"] = content_type
        upload, _ = self.call("POST", "/uploads", body)
        form, boundary = _multipart(upload["fields"], data)
        request = urllib.request.Request(
            upload["uploadUrl"],
            data=form,
            method="POST",
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300):
                pass
        except urllib.error.HTTPError as exc:
            raise ApiError(f"the upload was refused: {exc.code} {exc.read()[:300].decode(errors='replace')}") from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach {upload['uploadUrl']}: {exc.reason}") from None
        return upload


def _multipart(fields: dict[str, str], data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body: the policy's fields, then the file (S3 wants it last)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), boundary


def _message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        return f"{body.get('code', '')} {body.get('message', '')}".strip() or raw.decode()
    except ValueError:
        return raw.decode(errors="replace")[:200]


def progress_line(job: dict[str, Any], width: int = 30) -> str:
    """`[#########.....................]  30%  RUNNING  step 9 of 30  eta 12s`"""
    filled = job["progress"] * width // 100
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {job['progress']:3d}%", job["status"]]
    if job.get("message"):
        parts.append(job["message"])
    if job.get("etaSeconds") is not None and job["status"] not in TERMINAL:
        parts.append(f"eta {job['etaSeconds']}s")
    if job.get("stalled"):
        parts.append("(stalled)")
    return "  ".join(parts)


def wait(client: Client, job_id: str, first: dict[str, Any], retry_after: float) -> dict[str, Any]:
    """Poll the job no faster than the API's Retry-After until it ends, drawing its progress."""
    job, tty, last = first, sys.stderr.isatty(), None
    while True:
        line = progress_line(job)
        if line != last:
            sys.stderr.write(("\r\x1b[2K" + line) if tty else line + "\n")
            sys.stderr.flush()
            last = line
        if job["status"] in TERMINAL:
            if tty:
                sys.stderr.write("\n")
            return job
        time.sleep(retry_after)
        job, headers = client.call("GET", f"/jobs/{job_id}")
        retry_after = float(headers.get("Retry-After", 1))


def table(jobs: list[dict[str, Any]]) -> str:
    rows = [f"{'JOB':26}  {'TYPE':10}  {'STATUS':9}  {'PROGRESS':>8}  {'CREATED':24}  MESSAGE"]
    for job in jobs:
        rows.append(
            f"{job['jobId']:26}  {job['type'][:10]:10}  {job['status']:9}  {job['progress']:7d}%  "
            f"{job['createdAt']:24}  {(job.get('error') or job.get('message') or '')[:40]}"
        )
    return "\n".join(rows)


def limits_text(answer: dict[str, Any]) -> str:
    """`client demo, plan basic: 3 of 50 unfinished jobs (1 pending, 2 running); ...` from GET /limits."""
    usage, limits = answer["usage"], answer["limits"]
    counts = f"{usage['pendingJobs']} pending, {usage['runningJobs']} running"
    if limits is None:
        return f"client {answer['client']}: {usage['activeJobs']} unfinished jobs ({counts}); no limits"
    return (
        f"client {answer['client']}, plan {answer['plan']}: {usage['activeJobs']} of {limits['maxActiveJobs']}"
        f" unfinished jobs ({counts}); at most {limits['maxRunningJobs']} running at once;"
        f" timeoutSeconds up to {limits['maxTimeoutSeconds']}"
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
    """Upload the sample CSV, submit the DEMO jobs, cancel the last once it runs, wait for all, print the outcome."""
    import tempfile

    from local.run import sample_csv

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sales.csv"
        path.write_bytes(sample_csv())
        upload = client.upload(str(path))
    print(f"uploaded the sample CSV to s3://{upload['bucket']}/{upload['key']}")
    ids = []
    for what, body in DEMO:
        if body["type"] == "csv-stats":
            body = {**body, "payload": {**body["payload"], "bucket": upload["bucket"], "key": upload["key"]}}
        job, _ = client.call("POST", "/jobs", body)
        print(f"submitted {what}: {job['jobId']}")
        ids.append(job["jobId"])
    while client.call("GET", f"/jobs/{ids[-1]}")[0]["status"] == "PENDING":
        time.sleep(0.2)
    cancelled, _ = client.call("DELETE", f"/jobs/{ids[-1]}")
    print(f"cancel requested for {ids[-1]} (status {cancelled['status']}); waiting for all to end...")
    jobs = [client.call("GET", f"/jobs/{job_id}")[0] for job_id in ids]
    while any(job["status"] not in TERMINAL for job in jobs):
        time.sleep(0.5)
        jobs = [client.call("GET", f"/jobs/{job_id}")[0] for job_id in ids]
    print()
    print(table(jobs))
    for job in jobs:
        if job["status"] == "COMPLETED":
            print(f"{job['jobId']} result: {json.dumps(job['result'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs", description="Submit, watch and cancel jobs.")
    parser.add_argument("--url", default=os.environ.get("JOBS_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("JOBS_API_KEY"))
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument("type")
    submit.add_argument("--payload", default="{}", help="the payload, as JSON")
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--timeout-seconds", type=int)
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends, then its result")
    submit.add_argument("--input", metavar="FILE", help="upload FILE and set the payload's bucket and key to it")
    commands.add_parser("upload", help="upload a file for jobs to read; prints its key").add_argument("file")
    for name in ("status", "cancel"):
        commands.add_parser(name, help=f"{name} of one job").add_argument("id")
    listing = commands.add_parser("list", help="your jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--type")
    listing.add_argument("--limit", type=int, default=20)
    commands.add_parser("limits", help="your plan's job limits and how many of your jobs are unfinished")
    commands.add_parser("demo", help="submit a few jobs, cancel one, show the outcome")
    watch = commands.add_parser("watch", help="a live table of your recent jobs")
    watch.add_argument("--interval", type=float, default=1.0)
    watch.add_argument("--limit", type=int, default=15)
    checktype.add_parser(commands)
    ns = parser.parse_args(argv)
    if ns.command == "check-type":
        return checktype.run(ns)
    client = Client(ns.url, ns.key)
    try:
        return _run(client, ns)
    except ApiError as exc:
        print(f"jobs: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file to upload that cannot be read
        print(f"jobs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(client: Client, ns: argparse.Namespace) -> int:
    if ns.command == "submit":
        try:
            payload = json.loads(ns.payload)
        except ValueError as exc:
            raise ApiError(f"--payload is not JSON: {exc}") from None
        if ns.input:
            upload = client.upload(ns.input)
            print(f"uploaded {ns.input} to s3://{upload['bucket']}/{upload['key']}", file=sys.stderr)
            payload = {**payload, "bucket": upload["bucket"], "key": upload["key"]}
        body = {"type": ns.type, "payload": payload}
        if ns.max_attempts is not None:
            body["maxAttempts"] = ns.max_attempts
        if ns.timeout_seconds is not None:
            body["timeoutSeconds"] = ns.timeout_seconds
        headers = {"Idempotency-Key": ns.idempotency_key} if ns.idempotency_key else {}
        job, reply_headers = client.call("POST", "/jobs", body, headers)
        if not ns.wait:
            print(json.dumps(job, indent=2))
            return 0
        print(f"job {job['jobId']}", file=sys.stderr)
        job = wait(client, job["jobId"], job, float(reply_headers.get("Retry-After", 1)))
        if job["status"] == "COMPLETED":
            print(json.dumps(job["result"], indent=2))
            return 0
        reason = job.get("error") or job.get("message") or ""
        print(f"jobs: job {job['jobId']} {job['status']}: {reason}", file=sys.stderr)
        return 1
    if ns.command in ("status", "cancel"):
        job, _ = client.call("GET" if ns.command == "status" else "DELETE", f"/jobs/{urllib.parse.quote(ns.id)}")
        print(json.dumps(job, indent=2))
        return 0
    if ns.command == "list":
        query = {k: v for k, v in (("status", ns.status), ("type", ns.type), ("limit", ns.limit)) if v is not None}
        page, _ = client.call("GET", "/jobs?" + urllib.parse.urlencode(query))
        print(table(page["jobs"]))
        return 0
    if ns.command == "limits":
        print(limits_text(client.call("GET", "/limits")[0]))
        return 0
    if ns.command == "demo":
        return demo(client)
    if ns.command == "upload":
        upload = client.upload(ns.file)
        print(f"uploaded to s3://{upload['bucket']}/{upload['key']}", file=sys.stderr)
        print(upload["key"])
        return 0
    while True:  # watch
        page, _ = client.call("GET", f"/jobs?limit={ns.limit}")
        screen = f"{client.url}   {time.strftime('%H:%M:%S')}   Ctrl-C to stop\n\n{table(page['jobs'])}"
        sys.stdout.write(("\x1b[H\x1b[2J" + screen + "\n") if sys.stdout.isatty() else screen + "\n\n")
        sys.stdout.flush()
        time.sleep(ns.interval)


if __name__ == "__main__":
    sys.exit(main())
