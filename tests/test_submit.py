"""POST /jobs: what a client sees, what lands in MySQL, Redis and the queue."""

import json
from dataclasses import replace

import pytest

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime


def _queued_job_ids(sqs, queue_url):
    reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"])["jobId"] for m in reply.get("Messages", [])]


def test_submit_answers_202_and_stores_queues_and_caches_the_job(api, mysql, redis_client, sqs, settings, rt):
    reply = api.submit("sleep", {"steps": 3, "stepMs": 2000})

    assert reply.status == 202
    job_id = reply.json["jobId"]
    assert reply.headers["location"] == f"/jobs/{job_id}"
    assert reply.headers["retry-after"] == "2"  # the type's expected chunk time, 2 s
    assert reply.json["status"] == "PENDING"
    assert reply.json["progress"] == 0
    assert reply.json["type"] == "sleep"
    assert reply.json["createdAt"].endswith("Z")
    assert reply.json["stalled"] is False
    with mysql.cursor() as cur:
        cur.execute("SELECT owner, status, payload, attempts, max_attempts FROM jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
    assert row["owner"] == "key-a" and row["status"] == "PENDING" and row["attempts"] == 0
    assert json.loads(row["payload"]) == {"steps": 3, "stepMs": 2000}
    assert row["max_attempts"] == settings.default_max_attempts
    cached = redis_client.hgetall(rt.hot.job_key(job_id))
    assert hotstate.decode(cached["job"]).status is JobStatus.PENDING
    assert 0 < redis_client.ttl(rt.hot.job_key(job_id)) <= settings.active_ttl_seconds
    assert _queued_job_ids(sqs, settings.jobs_queue_url) == [job_id]


def test_job_ids_are_unguessable_and_time_ordered(api):
    first, second = (api.submit("sleep", {"steps": 1}).json["jobId"] for _ in range(2))
    assert len(first) == 26 and first < second
    assert first[:10] != second[10:]  # not a counter: the random part differs


def test_options_are_stored(api, mysql):
    job_id = api.submit("sleep", {"steps": 1}, maxAttempts=5, timeoutSeconds=60).json["jobId"]
    with mysql.cursor() as cur:
        cur.execute("SELECT max_attempts, timeout_seconds FROM jobs WHERE id = %s", (job_id,))
        assert cur.fetchone() == {"max_attempts": 5, "timeout_seconds": 60}


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "InvalidJson"),
        ("", "InvalidJson"),
        ("[1, 2]", "InvalidJson"),
        ('{"type": "sleep", "payload": {"steps": NaN}}', "InvalidJson"),
        ('{"type": "no-such-type"}', "UnknownJobType"),
        ('{"payload": {}}', "InvalidRequest"),
        ('{"type": 7}', "InvalidRequest"),
        ('{"type": "sleep", "colour": "red"}', "InvalidRequest"),
        ('{"type": "sleep", "payload": []}', "InvalidPayload"),
        ('{"type": "sleep", "payload": {"steps": "ten"}}', "InvalidPayload"),
        ('{"type": "sleep", "payload": {"steps": 0}}', "InvalidPayload"),
        ('{"type": "sleep", "payload": {"steps": 2.5}}', "InvalidPayload"),
        ('{"type": "sleep", "payload": {"nap": true}}', "InvalidPayload"),
        ('{"type": "sleep", "maxAttempts": 0}', "InvalidRequest"),
        ('{"type": "sleep", "timeoutSeconds": "soon"}', "InvalidRequest"),
    ],
)
def test_bad_submissions_get_400_with_a_json_error_and_store_nothing(api, mysql, raw, code):
    reply = api.request("POST", "/jobs", raw=raw)

    assert reply.status == 400
    assert reply.json["code"] == code
    assert reply.json["message"]
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 0


def test_a_body_over_the_limit_gets_413(api, settings):
    reply = api.submit("sleep", {"steps": 1, "filler": "x" * settings.max_body_bytes})
    assert reply.status == 413
    assert reply.json["code"] == "PayloadTooLarge"


def test_without_an_api_key_the_answer_is_403(api):
    reply = api.request("POST", "/jobs", key=None, body={"type": "sleep"})
    assert reply.status == 403
    assert reply.json["code"] == "Forbidden"


def test_a_wrong_content_type_gets_415_in_the_json_error_shape(api):
    reply = api.request("POST", "/jobs", body={"type": "sleep"}, headers={"content-type": "text/plain"})
    assert reply.status == 415
    assert reply.json == {"code": "UnsupportedMediaType", "message": "Unsupported media type: text/plain"}


def test_the_same_idempotency_key_twice_makes_one_job(api, mysql, sqs, settings):
    headers = {"Idempotency-Key": "order-42"}
    first = api.submit("sleep", {"steps": 2}, headers=headers)
    again = api.submit("sleep", {"steps": 2}, headers=headers)

    assert first.status == again.status == 202
    assert again.json["jobId"] == first.json["jobId"]
    assert again.headers["idempotent-replayed"] == "true"
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 1
    assert _queued_job_ids(sqs, settings.jobs_queue_url) == [first.json["jobId"]]


def test_the_same_idempotency_key_with_another_body_is_409(api):
    headers = {"Idempotency-Key": "order-43"}
    first = api.submit("sleep", {"steps": 2}, headers=headers)
    other = api.submit("sleep", {"steps": 3}, headers=headers)

    assert other.status == 409
    assert other.json["code"] == "IdempotencyKeyReused"
    assert other.json["jobId"] == first.json["jobId"]


def test_idempotency_keys_belong_to_one_client(api):
    headers = {"Idempotency-Key": "shared-name"}
    mine = api.submit("sleep", {"steps": 2}, headers=headers, key="key-a")
    theirs = api.submit("sleep", {"steps": 2}, headers=headers, key="key-b")
    assert mine.status == theirs.status == 202
    assert mine.json["jobId"] != theirs.json["jobId"]


def test_a_bad_idempotency_key_is_400(api):
    reply = api.submit("sleep", {"steps": 1}, headers={"Idempotency-Key": "x" * 256})
    assert reply.status == 400
    assert reply.json["code"] == "InvalidRequest"


def test_when_sqs_refuses_the_send_the_client_still_gets_202_and_the_row_waits(settings, api, mysql):
    broken = Runtime(replace(settings, jobs_queue_url=settings.jobs_queue_url + "-gone"))
    runtime_module.use(broken)

    reply = api.submit("sleep", {"steps": 1})

    assert reply.status == 202
    with mysql.cursor() as cur:
        cur.execute("SELECT status FROM jobs WHERE id = %s", (reply.json["jobId"],))
        assert cur.fetchone()["status"] == "PENDING"


def test_when_mysql_is_down_submit_is_503_and_nothing_is_queued(settings, api, sqs):
    down = Runtime(replace(settings, mysql_url="mysql://root@127.0.0.1:1/jobs"))
    runtime_module.use(down)

    reply = api.submit("sleep", {"steps": 1})

    assert reply.status == 503
    assert reply.json["code"] == "ServiceUnavailable"
    assert reply.headers["retry-after"] == "5"
    assert _queued_job_ids(sqs, settings.jobs_queue_url) == []


def test_submit_costs_one_mysql_insert_one_redis_round_trip_and_one_sqs_send(api, rt, io_counts, sqs, settings):
    api.submit("sleep", {"steps": 1})  # warm up: connections, script loading, the SQS client
    sends = []
    rt.queue._sqs.meta.events.register("before-call.sqs.*", lambda model, **_: sends.append(model.name))
    io_counts.reset()

    reply = api.submit("sleep", {"steps": 1})

    assert reply.status == 202
    assert [s.split()[0] for s in io_counts.mysql_statements] == ["INSERT"]
    assert io_counts.redis_round_trips == 1
    assert sends == ["SendMessage"]
