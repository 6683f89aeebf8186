"""Errors named for what they are: a dependency down is a wait, not a failed attempt; a refused or
changed input is a permanent failure that says so; no client-visible text carries an endpoint, an
ARN, an account id or a stack frame (issue 15)."""

import json
import re
import threading
import time
from dataclasses import replace

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib import errors, http, objects
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from local import services
from tests.conftest import poll_until_finished, wait_until
from tests.support.probe import Probe

#: What no text a client reads may contain.
# An account id is 12 digits standing alone, as the sanitiser reads it: not the tail of a test
# bucket's name (`bucket-<12 hex>` is all digits about once in 280 runs).
LEAKS = re.compile(
    r"https?://|127\.0\.0\.1|localhost|amazonaws\.com|arn:aws|(?<![\w-])\d{12}(?![\w-])|Traceback|File \""
)
CSV = b"id,amount\n" + b"".join(b"%d,%d.5\n" % (i, i) for i in range(400))

#: The input, under the test owner's prefix (another owner's key reads as missing).
KEY = "inputs/key-a/in.csv"


def _use(settings, **changes) -> Runtime:
    runtime = Runtime(replace(settings, **changes))
    runtime_module.use(runtime)
    return runtime


def _refusing_s3() -> object:
    """An S3 client whose endpoint refuses connections (nothing listens on the port)."""
    return objects.connect(endpoint_url=f"http://127.0.0.1:{services.free_port()}", region="us-east-1")


# --- the sanitiser ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        'ObjectStoreUnavailable: S3: cannot read s3://b/k: Could not connect to the endpoint URL: "http://127.0.0.1:1/b/k"',
        "MySQL: (2003, \"Can't connect to MySQL server on 'db.internal' ([Errno 111] Connection refused)\")",
        "Redis: Error 111 connecting to jobs.abc123.0001.use1.cache.amazonaws.com:6379. Connection refused.",
        "User: arn:aws:sts::123456789012:assumed-role/jobs-dev/run_jobs is not authorized to perform s3:GetObject",
        'Traceback (most recent call last):\n  File "/var/task/chalicelib/worker.py", line 3, in run\nKeyError: 1',
        "could not reach redis://:secret@10.0.4.2:6379/0 (account 123456789012)",
    ],
)
def test_the_sanitiser_strips_endpoints_arns_accounts_and_stack_frames(text):
    clean = errors.sanitise(text)

    assert not LEAKS.search(clean) and "secret" not in clean and "db.internal" not in clean


def test_the_sanitiser_keeps_the_inputs_own_address_and_plain_numbers():
    text = "s3://bucket/in.csv changed while the job read it (line 12: 4 fields where the header has 3)"

    assert errors.sanitise(text) == text


def test_http_error_bodies_pass_through_the_sanitiser():
    response = http.error_response(errors.InvalidPayload('cannot use "https://10.0.0.7:8443/x" for arn:aws:s3:::b'))

    assert response.status_code == 400 and not LEAKS.search(json.dumps(response.body))


# --- S3 down: a wait, not a failed attempt ---------------------------------------------------------
def test_with_s3_down_for_a_few_seconds_the_job_waits_and_completes_with_attempts_unchanged(
    api, events, settings, s3, bucket
):
    # Given S3 refusing connections when the job's first chunk reads its input
    runtime = _use(settings, dependency_wait_seconds=1)
    s3.put_object(Bucket=bucket, Key=KEY, Body=CSV)
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": KEY, "chunkBytes": 1024}, maxAttempts=1).json["jobId"]
    runtime.objects._client = _refusing_s3()

    # When it runs, and S3 comes back a few seconds later
    events.drain()
    waiting = api.get(job_id).json
    time.sleep(2)
    still_waiting = _poll_until_running(events, api, job_id)
    runtime.objects._client = None  # S3 is back: the next use connects to moto again
    job = poll_until_finished(events, api, job_id)

    # Then it waited saying for what, without an endpoint, and completed on its one attempt
    for view in (waiting, still_waiting):
        assert view["status"] == "RUNNING" and view["attempts"] == 1 and view["error"] is None
        assert view["message"].startswith(f"waiting for S3: cannot read s3://{bucket}/{KEY}")
        assert not LEAKS.search(json.dumps(view))
    assert job["status"] == "COMPLETED" and job["attempts"] == 1 and job["error"] is None
    assert job["result"]["rows"] == 400 and job["result"]["columns"]["amount"]["count"] == 400


def _poll_until_running(events, api, job_id) -> dict:
    """One more delivery of the waiting job (S3 still down): it waits again."""
    events.poll_once(wait_seconds=2)
    return api.get(job_id).json


def test_with_s3_down_longer_than_the_timeout_the_job_times_out_and_never_leaks_the_endpoint(
    api, events, settings, s3, bucket
):
    runtime = _use(settings, dependency_wait_seconds=1)
    s3.put_object(Bucket=bucket, Key=KEY, Body=CSV)
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": KEY}, maxAttempts=1, timeoutSeconds=2).json["jobId"]
    runtime.objects._client = _refusing_s3()

    job = poll_until_finished(events, api, job_id)

    assert job["status"] == "FAILED" and job["error"] == "timed out: ran longer than timeoutSeconds (2)"
    assert job["attempts"] == 1 and job["message"].startswith("waiting for S3: ")
    assert not LEAKS.search(json.dumps(job))


# --- Redis down mid-run: a wait, which MySQL shows ----------------------------------------------------
def test_with_redis_down_mid_run_the_job_waits_saying_so_and_completes_with_attempts_unchanged(
    api, events, settings, tmp_path, mysql
):
    # Given a job running against a Redis of its own, which stops after a few chunks
    proc, port = services.start_redis(tmp_path)
    _use(settings, redis_url=f"redis://127.0.0.1:{port}/0", dependency_wait_seconds=3)
    job_id = api.submit("probe", {"tag": "redis-down", "steps": 8, "stepMs": 50, "gateAtStep": 4}).json["jobId"]
    Probe.gates["redis-down"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("redis-down") == [1, 2, 3, 4])
    services.stop(proc)
    gate.set()  # step 4 ends with Redis down: its checkpoint cannot be written
    worker.join(30)

    # When GET reads the job (from MySQL) and Redis comes back before the wait is over
    waiting = api.get(job_id).json
    row = _row(mysql, job_id)
    proc, _ = services.start_redis(tmp_path, port=port)
    try:
        job = poll_until_finished(events, api, job_id)
    finally:
        services.stop(proc)

    # Then the job said what it waited for, and finished on its first attempt
    assert waiting["status"] == "RUNNING" and waiting["attempts"] == 1 and waiting["error"] is None
    assert waiting["message"].startswith("waiting for Redis: ") and not LEAKS.search(json.dumps(waiting))
    assert row["attempts"] == 1 and row["deaths"] == 0
    assert job["status"] == "COMPLETED" and job["attempts"] == 1
    assert {k: job["result"][k] for k in ("done", "sum")} == {"done": 8, "sum": 36}


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


# --- an input that cannot be read, or changes --------------------------------------------------------
def test_access_denied_on_an_input_fails_the_job_at_once_without_role_or_account(api, events, settings, s3, bucket):
    runtime = _use(settings)
    s3.put_object(Bucket=bucket, Key=KEY, Body=CSV)  # submit finds it; the worker's read is then refused
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": KEY}, maxAttempts=3).json["jobId"]
    client = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error(
        "head_object",
        service_error_code="AccessDenied",
        service_message="User: arn:aws:sts::123456789012:assumed-role/jobs-dev/run_jobs is not authorized",
        http_status_code=403,
    )
    stub.activate()
    runtime.objects._client = client

    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1
    assert job["error"] == f"ObjectAccessDenied: cannot read input object s3://{bucket}/{KEY}"
    assert not LEAKS.search(json.dumps(job))


def test_an_input_that_shrinks_under_the_job_fails_it_as_changed_not_as_an_outage(api, events, settings, s3, bucket):
    # Given a job reading 1 KiB chunks of an object, which is replaced by a shorter one after chunk 1
    runtime = _use(settings)
    s3.put_object(Bucket=bucket, Key=KEY, Body=CSV)
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": KEY, "chunkBytes": 1024}).json["jobId"]
    read_range = runtime.objects.read_range

    def shrinking(bucket_, key, start, end):
        data = read_range(bucket_, key, start, end)
        s3.put_object(Bucket=bucket, Key=KEY, Body=CSV[:500])
        return data

    runtime.objects.read_range = shrinking

    # When it reads on: S3 answers 416 InvalidRange for the next range
    events.drain()

    # Then the job failed at once, saying the input changed
    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1
    assert job["error"] == f"ObjectChanged: s3://{bucket}/{KEY} changed while the job read it"


def test_a_range_past_the_end_of_an_object_is_object_changed(rt, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")

    with pytest.raises(errors.ObjectChanged, match=f"s3://{bucket}/k changed while the job read it"):
        rt.objects.read_range(bucket, "k", 20, 29)
