"""Results by size: inline in the view, or an object in RESULTS_BUCKET behind a presigned URL.

Given a worker and the API over real MariaDB, Redis and moto's S3 (loopback), when a job's result
is over INLINE_RESULT_BYTES, then the view has `result: null`, `resultBytes` and a `resultUrl` that
downloads exactly the result, `/result` answers 303 to a fresh URL, and purging the job deletes
the object; over RESULT_MAX_BYTES the job fails naming both sizes.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from datetime import timedelta

import pytest

from chalicelib import hotstate, http
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from chalicelib.service import JobResult
from tests.conftest import wait_until

MB = 1_000_000


@pytest.fixture
def results_rt(settings, bucket, api) -> Runtime:
    """The runtime of the API and the worker, with this test's bucket as RESULTS_BUCKET."""
    runtime = Runtime(replace(settings, results_bucket=bucket))
    runtime_module.use(runtime)
    return runtime


def _expected(blob_bytes: int, steps: int = 1) -> dict:
    return {"done": steps, "sum": steps * (steps + 1) // 2, "lastPass": 1, "blob": "x" * blob_bytes}


def _encoded(result) -> bytes:
    return json.dumps(result, separators=(",", ":")).encode()


def _download(url: str) -> bytes:
    assert url.startswith("http://127.0.0.1:"), url  # moto, on loopback: nothing leaves the machine
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


def _row(mysql, job_id: str) -> dict:
    with mysql.cursor() as cur:
        cur.execute(
            "SELECT status, result, result_bytes, result_key, error, attempts FROM jobs WHERE id = %s", (job_id,)
        )
        return cur.fetchone()


def test_a_50_mb_result_completes_and_its_url_downloads_exactly_the_result(
    results_rt, api, events, s3, bucket, mysql, redis_client
):
    job_id = api.submit("probe", {"steps": 1, "tag": "large", "resultBytes": 50 * MB}).json["jobId"]

    events.drain()

    expected = _encoded(_expected(50 * MB))
    view = api.get(job_id)
    assert view.status == 200 and view.json["status"] == "COMPLETED"
    assert view.json["result"] is None and view.json["resultBytes"] == len(expected)
    assert _download(view.json["resultUrl"]) == expected
    key = f"results/key-a/{job_id}.json"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(expected) and head["ContentType"] == "application/json"
    row = _row(mysql, job_id)
    assert (row["status"], row["result"], row["result_bytes"], row["result_key"]) == (
        "COMPLETED",
        None,
        len(expected),
        key,
    )
    hot = hotstate.decode(redis_client.hget(results_rt.hot.job_key(job_id), "job"))
    assert hot.result is None and hot.result_key == key  # Redis holds the reference, not 50 MB

    found = api.request("GET", f"/jobs/{job_id}/result")
    assert found.status == 303 and found.headers["cache-control"] == "no-store"
    assert _download(found.headers["location"]) == expected


def test_each_read_signs_a_fresh_url(results_rt, api, events):
    job_id = api.submit("probe", {"steps": 1, "tag": "fresh", "resultBytes": 300_000}).json["jobId"]
    events.drain()

    first = api.get(job_id).json["resultUrl"]
    redirect = api.request("GET", f"/jobs/{job_id}/result").headers["location"]

    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in first and "X-Amz-Expires=300" in first
    assert first.split("?")[0] == redirect.split("?")[0]
    assert json.loads(_download(redirect))["blob"] == "x" * 300_000


def test_a_result_under_the_threshold_is_inline_and_result_answers_200(results_rt, api, events, s3, bucket):
    job_id = api.submit("probe", {"steps": 2, "tag": "small", "resultBytes": 1000}).json["jobId"]
    events.drain()

    view = api.get(job_id).json
    found = api.request("GET", f"/jobs/{job_id}/result")

    assert view["result"] == _expected(1000, steps=2) and view["resultUrl"] is None
    assert view["resultBytes"] == len(_encoded(_expected(1000, steps=2)))
    assert (found.status, found.headers["content-type"], found.json) == (200, "application/json", view["result"])
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_bare_string_result_is_answered_as_json_not_as_text():
    response = http.result_response(JobResult(value="just text"))

    assert (response.status_code, response.body) == (200, '"just text"')
    assert response.headers["Content-Type"] == "application/json"


def test_result_of_a_job_that_has_not_completed_is_409(results_rt, api, events):
    failed = api.submit("probe", {"steps": 1, "tag": "f", "failAtStep": 1}, maxAttempts=1).json["jobId"]
    events.drain()
    pending = api.submit("sleep", {"steps": 1}).json["jobId"]
    assert api.get(failed).json["status"] == "FAILED"

    for job_id, status in ((failed, "FAILED"), (pending, "PENDING")):
        reply = api.request("GET", f"/jobs/{job_id}/result")
        assert (reply.status, reply.json["code"], reply.json["status"]) == (409, "JobNotCompleted", status)


@pytest.mark.parametrize("size", [1000, 300_000], ids=["inline", "in-s3"])
def test_another_client_cannot_fetch_a_result_and_it_reads_as_an_unknown_job(results_rt, api, events, size):
    job_id = api.submit("probe", {"steps": 1, "tag": "mine", "resultBytes": size}, key="key-a").json["jobId"]
    events.drain()

    theirs = api.request("GET", f"/jobs/{job_id}/result", key="key-b")
    unknown = api.request("GET", f"/jobs/{'7' + 'Z' * 25}/result", key="key-b")
    malformed = api.request("GET", "/jobs/nope/result", key="key-b")

    assert (theirs.status, theirs.json["code"]) == (404, "JobNotFound")
    assert (unknown.status, unknown.json["code"]) == (404, "JobNotFound")
    assert theirs.json["message"].replace(job_id, "ID") == unknown.json["message"].replace("7" + "Z" * 25, "ID")
    assert "location" not in theirs.headers
    assert (malformed.status, malformed.json["code"]) == (400, "InvalidJobId")
    assert api.request("GET", f"/jobs/{job_id}/result", key="key-a").status in (200, 303)


def test_a_result_over_the_ceiling_fails_the_job_with_both_sizes(settings, bucket, api, events, mysql, s3):
    runtime_module.use(Runtime(replace(settings, results_bucket=bucket, result_max_bytes=100_000)))
    job_id = api.submit("probe", {"steps": 1, "tag": "huge", "resultBytes": 200_000}).json["jobId"]

    events.drain()

    size = len(_encoded(_expected(200_000)))
    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1  # at once: no retry can shrink it
    assert job["error"] == f"ResultTooLarge: result is {size} bytes, over the ceiling of 100000"
    assert job["result"] is None and job["resultUrl"] is None and job["resultBytes"] is None
    assert _row(mysql, job_id)["result_key"] is None
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_down_when_the_result_is_written_retries_the_step_and_loses_nothing(settings, bucket, api, events, mysql):
    broken = Runtime(replace(settings, results_bucket=bucket, aws_endpoint_url="http://127.0.0.1:1"))
    broken.__dict__["queue"] = Runtime(settings).queue  # only S3 is down
    runtime_module.use(broken)
    job_id = api.submit("probe", {"steps": 1, "tag": "s3down", "resultBytes": 300_000}).json["jobId"]

    events.invoke(events.receive())

    row = _row(mysql, job_id)
    assert row["status"] == "RUNNING" and row["result_key"] is None  # never COMPLETED without its object
    runtime_module.use(Runtime(replace(settings, results_bucket=bucket)))
    wait_until(lambda: events.drain() >= 0 and _row(mysql, job_id)["status"] == "COMPLETED", timeout=15, interval=0.2)
    view = api.get(job_id).json
    assert view["status"] == "COMPLETED" and json.loads(_download(view["resultUrl"]))["blob"] == "x" * 300_000


def test_purging_a_job_deletes_its_result_object(results_rt, api, events, s3, bucket, mysql):
    large = api.submit("probe", {"steps": 1, "tag": "old", "resultBytes": 300_000}).json["jobId"]
    kept = api.submit("probe", {"steps": 1, "tag": "new", "resultBytes": 300_000}).json["jobId"]
    events.drain()
    with mysql.cursor() as cur:
        cur.execute("UPDATE jobs SET updated_at = NOW(3) - INTERVAL 8 DAY WHERE id = %s", (large,))

    report = results_rt.sweeper.sweep()

    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert report.purged == 1 and keys == {f"results/key-a/{kept}.json"}
    assert _row(mysql, large) is None
    assert timedelta(seconds=results_rt.settings.retention_seconds).days + 1 == 8  # infra's ResultExpiryDays
