"""POST /uploads: a presigned POST under the caller's prefix, then a job on the uploaded file."""

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from chalice.test import Client

import app as app_module
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from tests.conftest import Api
from tests.test_csv_stats import generated_csv, reference_stats

LIMIT = 4096


@pytest.fixture
def uploads_api(rt, settings, bucket):
    """The API of a service whose input bucket is `bucket`, with a small UPLOAD_MAX_BYTES."""
    runtime_module.use(Runtime(replace(settings, input_buckets=(bucket,), upload_max_bytes=LIMIT)))
    with Client(app_module.app) as client:
        yield Api(client)


def post_file(upload: dict, data: bytes) -> requests.Response:
    return requests.post(upload["uploadUrl"], data=upload["fields"], files={"file": ("f", data)}, timeout=10)


def policy(upload: dict) -> dict:
    return json.loads(base64.b64decode(upload["fields"]["policy"]))


def test_an_upload_through_the_presigned_post_then_a_job_on_it_completes(uploads_api, events, s3, bucket):
    data = generated_csv(rows=20)
    assert len(data) <= LIMIT
    reply = uploads_api.request(
        "POST", "/uploads", body={"filename": "sales 2026.csv", "contentType": "text/csv", "bytes": len(data)}
    )
    assert reply.status == 201, reply.json
    upload = reply.json
    assert upload["bucket"] == bucket
    assert upload["key"].startswith("inputs/key-a/") and upload["key"].endswith("-sales_2026.csv")
    expires = datetime.fromisoformat(upload["expiresAt"].replace("Z", "+00:00"))
    assert 890 < (expires - datetime.now(UTC)).total_seconds() <= 900

    sent = post_file(upload, data)
    assert sent.status_code == 204, sent.text
    assert s3.get_object(Bucket=bucket, Key=upload["key"])["Body"].read() == data

    job_id = uploads_api.submit("csv-stats", {"bucket": bucket, "key": upload["key"]}).json["jobId"]
    events.drain()
    job = uploads_api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["result"] == reference_stats(data)


def test_the_policy_names_the_exact_key_the_size_and_the_content_type(uploads_api, bucket):
    exact = uploads_api.request("POST", "/uploads", body={"bytes": 100, "contentType": "text/csv"}).json
    anything = uploads_api.request("POST", "/uploads", body={}).json

    conditions = policy(exact)["conditions"]
    assert ["content-length-range", 100, 100] in conditions
    assert {"key": exact["key"]} in conditions and {"bucket": bucket} in conditions
    assert {"Content-Type": "text/csv"} in conditions and exact["fields"]["Content-Type"] == "text/csv"
    assert ["content-length-range", 0, LIMIT] in policy(anything)["conditions"]
    assert anything["maxBytes"] == LIMIT and exact["maxBytes"] == 100
    assert anything["key"].count("/") == 2  # inputs/key-a/<ULID>, no name


def test_moto_does_not_enforce_the_policy_so_only_s3_refuses_an_over_limit_upload(uploads_api, s3, bucket):
    """moto 5.2.5's POST handler stores the body under the form's `key` without reading the policy:
    no size range, no key condition, no expiry, no signature. S3 answers 400 EntityTooLarge here. If
    this test fails, moto has learnt to enforce policies: make it assert the refusal instead."""
    upload = uploads_api.request("POST", "/uploads", body={"bytes": 10}).json

    sent = post_file(upload, b"x" * (LIMIT + 1))

    assert sent.status_code == 204
    assert s3.head_object(Bucket=bucket, Key=upload["key"])["ContentLength"] == LIMIT + 1


@pytest.mark.parametrize(
    "body, message",
    [
        ({"bytes": LIMIT + 1}, f"bytes must be an integer from 0 to {LIMIT}"),
        ({"bytes": -1}, "bytes must be"),
        ({"bytes": True}, "bytes must be"),
        ({"bytes": "10"}, "bytes must be"),
        ({"filename": "dir/a.csv"}, "without a path"),
        ({"filename": "..\\a.csv"}, "without a path"),
        ({"filename": ".."}, "without a path"),
        ({"filename": "a\nb.csv"}, "control characters"),
        ({"filename": ""}, "filename must be a string"),
        ({"filename": "x" * 256}, "filename must be a string"),
        ({"contentType": "csv"}, "contentType must be a media type"),
        ({"size": 3}, "unknown fields: size"),
        ({"bytes": None}, "rather than send null: bytes"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(uploads_api, body, message):
    reply = uploads_api.request("POST", "/uploads", body=body)

    assert reply.status == 400 and reply.json["code"] == "InvalidRequest"
    assert message in reply.json["message"]


def test_a_body_that_is_not_an_object_is_a_400(uploads_api):
    assert uploads_api.request("POST", "/uploads", raw="[]").json["code"] == "InvalidJson"
    assert uploads_api.request("POST", "/uploads", raw="{").json["code"] == "InvalidJson"


def test_names_are_kept_safe_and_short_with_their_extension(uploads_api):
    key = uploads_api.request("POST", "/uploads", body={"filename": "Ré sumé (final).csv"}).json["key"]
    long = uploads_api.request("POST", "/uploads", body={"filename": "n" * 250 + ".csv"}).json["key"]

    assert key.endswith("-R_sum_final_.csv")
    tail = long.rsplit("/", 1)[1].split("-", 1)[1]
    assert len(tail) == 100 and tail.endswith(".csv")


def test_uploads_are_per_owner_and_another_owner_cannot_run_a_job_on_one(uploads_api, bucket):
    mine = uploads_api.request("POST", "/uploads", body={"bytes": 4}, key="key-a").json
    theirs = uploads_api.request("POST", "/uploads", body={"bytes": 4}, key="key-b").json
    assert post_file(mine, b"a\n1\n").status_code == 204

    by_b = uploads_api.submit("csv-stats", {"bucket": bucket, "key": mine["key"]}, key="key-b")

    assert mine["key"].startswith("inputs/key-a/") and theirs["key"].startswith("inputs/key-b/")
    assert (by_b.status, by_b.json["message"]) == (400, f"input object not found: s3://{bucket}/{mine['key']}")
    assert uploads_api.submit("csv-stats", {"bucket": bucket, "key": mine["key"]}, key="key-a").status == 202


def test_without_an_input_bucket_uploads_are_503(api):
    reply = api.request("POST", "/uploads", body={})

    assert reply.status == 503 and reply.headers["retry-after"]


def test_the_dashboard_may_send_files_to_the_upload_origin_only(uploads_api, moto_url):
    with Client(app_module.app) as client:
        reply = client.http.get("/dashboard")

    policy_header = reply.headers["Content-Security-Policy"]
    assert f"connect-src 'self' {moto_url};" in policy_header
    assert "form-action 'self'" in policy_header
