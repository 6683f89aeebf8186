"""GET /jobs/{id}: Redis first (one round trip, no MySQL), MySQL when Redis has nothing or is down."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime

FIELDS = {
    "jobId",
    "type",
    "status",
    "progress",
    "progressDetail",
    "message",
    "etaSeconds",
    "updatedAt",
    "result",
    "resultUrl",
    "resultBytes",
    "error",
    "previousError",
    "attempts",
    "maxAttempts",
    "cancelRequested",
    "createdAt",
    "runAt",
    "priority",
    "batchId",
    "dependsOn",
    "startedAt",
    "finishedAt",
    "stalled",
}


def test_get_of_a_hot_job_costs_one_redis_round_trip_and_no_mysql(api, io_counts):
    job_id = api.submit("sleep", {"steps": 2, "stepMs": 1500}).json["jobId"]
    api.get(job_id)  # warm connections
    io_counts.reset()

    reply = api.get(job_id)

    assert reply.status == 200
    assert set(reply.json) == FIELDS
    assert reply.json["status"] == "PENDING"
    assert reply.headers["retry-after"] == "2"
    assert io_counts.redis_round_trips == 1
    assert io_counts.mysql_statements == []


def test_after_flushall_get_answers_from_mysql_with_the_right_state(settings, private_redis, api, events, io_counts):
    runtime_module.use(Runtime(replace(settings, redis_url=private_redis)))
    done = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
    events.drain()
    waiting = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
    before = api.get(done).json
    redis.Redis.from_url(private_redis).flushall()
    io_counts.reset()

    after = api.get(done)

    assert after.status == 200
    assert after.json == before
    assert after.json["status"] == "COMPLETED" and after.json["result"] == {"steps": 2, "sleptMs": 0}
    assert len(io_counts.mysql_statements) == 1
    assert api.get(waiting).json["status"] == "PENDING"
    # A terminal state read from MySQL is put back in Redis, so the next poll is cheap again.
    io_counts.reset()
    assert api.get(done).json == before
    assert io_counts.mysql_statements == []


def test_when_redis_is_down_get_answers_from_mysql(settings, api, events):
    job_id = api.submit("sleep", {"steps": 1, "stepMs": 0}).json["jobId"]
    events.drain()
    runtime_module.use(Runtime(replace(settings, redis_url="redis://127.0.0.1:1/0")))

    reply = api.get(job_id)

    assert reply.status == 200
    assert reply.json["status"] == "COMPLETED"


def test_an_unknown_id_is_404_not_pending(api):
    reply = api.get("01" + "A" * 24)
    assert reply.status == 404
    assert reply.json["code"] == "JobNotFound"


@pytest.mark.parametrize("bad_id", ["42", "not-a-job", "0" * 27, "8" + "0" * 25, "01" + "U" * 24, "%27%20OR%201%3D1"])
def test_a_malformed_id_is_400(api, bad_id):
    reply = api.get(bad_id)
    assert reply.status == 400
    assert reply.json["code"] == "InvalidJobId"


def test_ids_are_accepted_in_lower_case(api):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    assert api.get(job_id.lower()).json["jobId"] == job_id


@pytest.mark.parametrize("flush", [False, True], ids=["from-redis", "from-mysql"])
def test_another_api_key_gets_404_for_the_job(api, redis_client, rt, flush):
    job_id = api.submit("sleep", {"steps": 1}, key="key-a").json["jobId"]
    if flush:
        redis_client.delete(rt.hot.job_key(job_id))

    reply = api.get(job_id, key="key-b")

    assert reply.status == 404
    assert reply.json["code"] == "JobNotFound"


def test_a_running_job_without_a_recent_checkpoint_reads_stalled(api, redis_client, settings, rt):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    key = rt.hot.job_key(job_id)
    hot = hotstate.decode(redis_client.hget(key, "job"))
    old = datetime.now(UTC) - timedelta(seconds=settings.stall_after_seconds + 5)
    redis_client.hset(key, "job", hotstate.encode(replace(hot, status=JobStatus.RUNNING, updated_at=old)))

    assert api.get(job_id).json["stalled"] is True


def test_without_an_api_key_get_is_403(api):
    reply = api.request("GET", "/jobs/" + "01" + "A" * 24, key=None)
    assert reply.status == 403
    assert reply.json["code"] == "Forbidden"


def test_an_unsupported_method_is_405_in_the_json_error_shape(api):
    reply = api.request("PUT", "/jobs/" + "01" + "A" * 24, body={})
    assert reply.status == 405
    assert reply.json["code"] == "MethodNotAllowedError"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_malformed_id_never_reaches_mysql_or_redis(api, io_counts, method):
    api.request("GET", "/jobs")  # warm up
    io_counts.reset()

    reply = api.request(method, "/jobs/1%27%3B%20DROP%20TABLE%20jobs%3B--")

    assert reply.status == 400
    assert io_counts.mysql_statements == [] and io_counts.redis_round_trips == 0
