"""GET /jobs?ids=: one poll for many jobs (one Redis round trip, one MySQL query for what Redis lacks)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime
from tests.test_get import FIELDS


def _ids(reply) -> list[str]:
    return [job["jobId"] for job in reply.json["jobs"]]


def _submit(api, n, *, key="key-a", **payload):
    return [api.submit("sleep", {"steps": 2, "stepMs": 1500, **payload}, key=key).json["jobId"] for _ in range(n)]


def test_a_hundred_hot_jobs_cost_one_redis_round_trip_and_no_mysql(api, io_counts):
    # Given 100 of the caller's jobs, all hot in Redis
    ids = _submit(api, 100)
    api.request("GET", f"/jobs?ids={ids[0]}")  # warm connections
    io_counts.reset()

    # When it polls them all at once
    reply = api.request("GET", f"/jobs?ids={','.join(ids)}")

    # Then all come back, newest first, as list items, for one round trip and no MySQL statement
    assert reply.status == 200
    assert _ids(reply) == sorted(ids, reverse=True)
    assert reply.json["nextCursor"] is None
    assert set(reply.json["jobs"][0]) == FIELDS - {"result", "resultUrl"}
    assert io_counts.redis_round_trips == 1
    assert io_counts.mysql_statements == []


def test_jobs_redis_lacks_come_from_mysql_in_one_query(api, io_counts, redis_client, rt, events):
    # Given ten jobs, three of which Redis has lost (one of them finished)
    finished = _submit(api, 1, steps=1, stepMs=0)[0]
    events.drain()
    ids = [finished, *_submit(api, 9)]
    lost = {finished, ids[3], ids[7]}
    for job_id in lost:
        redis_client.delete(*rt.hot.keys_of(job_id))
    io_counts.reset()

    reply = api.request("GET", f"/jobs?ids={','.join(ids)}")

    assert sorted(_ids(reply)) == sorted(ids)
    assert {job["jobId"]: job["status"] for job in reply.json["jobs"]}[finished] == "COMPLETED"
    assert io_counts.redis_round_trips == 1
    assert len(io_counts.mysql_statements) == 1
    assert " IN (" in io_counts.mysql_statements[0]


def test_unknown_and_other_owners_ids_are_simply_absent(api, redis_client, rt):
    mine = _submit(api, 2)
    theirs = _submit(api, 2, key="key-b")
    redis_client.delete(rt.hot.job_key(theirs[1]))  # one of theirs only in MySQL
    unknown = "01" + "A" * 24

    reply = api.request("GET", f"/jobs?ids={','.join([*theirs, unknown, *mine, mine[0]])}")
    other = api.request("GET", f"/jobs?ids={','.join(mine)}", key="key-b")

    assert reply.status == 200
    assert _ids(reply) == sorted(mine, reverse=True)  # a repeated id counts once
    assert other.status == 200 and other.json == {"jobs": [], "nextCursor": None}


def test_ids_are_accepted_in_lower_case(api):
    job_id = _submit(api, 1)[0]
    assert _ids(api.request("GET", f"/jobs?ids={job_id.lower()}")) == [job_id]


def test_the_answer_is_paced_by_the_smallest_retry_after_of_its_active_jobs(api, events):
    done = _submit(api, 1, steps=1, stepMs=0)[0]
    events.drain()
    slow = api.submit("sleep", {"steps": 2, "stepMs": 5000}).json["jobId"]
    quick = api.submit("sleep", {"steps": 2, "stepMs": 2000}).json["jobId"]

    both = api.request("GET", f"/jobs?ids={slow},{quick},{done}")
    finished_only = api.request("GET", f"/jobs?ids={done}")

    assert both.headers["retry-after"] == "2"
    assert "retry-after" not in finished_only.headers


def test_status_type_limit_and_cursor_apply_to_the_named_jobs(api, events):
    done = _submit(api, 1, steps=1, stepMs=0)[0]
    events.drain()
    waiting = _submit(api, 4)
    probe = api.submit("probe", {"steps": 1, "tag": "ids"}).json["jobId"]
    ids = ",".join([done, *waiting, probe])

    assert _ids(api.request("GET", f"/jobs?ids={ids}&status=COMPLETED")) == [done]
    assert _ids(api.request("GET", f"/jobs?ids={ids}&type=probe")) == [probe]
    first = api.request("GET", f"/jobs?ids={ids}&limit=2")
    rest = api.request("GET", f"/jobs?ids={ids}&cursor={first.json['nextCursor']}")
    assert _ids(first) == [probe, waiting[3]]
    assert _ids(rest) == [waiting[2], waiting[1], waiting[0], done] and rest.json["nextCursor"] is None


def test_a_quiet_hot_view_of_a_job_that_ended_reads_its_row(api, redis_client, settings, rt, events):
    # Given a finished job whose hot view still says RUNNING, long quiet (a final write that missed Redis)
    job_id = _submit(api, 1, steps=1, stepMs=0)[0]
    events.drain()
    key = rt.hot.job_key(job_id)
    hot = hotstate.decode(redis_client.hget(key, "job"))
    old = datetime.now(UTC) - timedelta(seconds=settings.stall_after_seconds + 5)
    stale = replace(hot, status=JobStatus.RUNNING, updated_at=old, finished_at=None, result=None)
    redis_client.hset(key, "job", hotstate.encode(stale))

    [job] = api.request("GET", f"/jobs?ids={job_id}").json["jobs"]

    assert job["status"] == "COMPLETED" and job["stalled"] is False


def test_a_quiet_view_still_active_is_checked_once_then_served_from_redis(api, redis_client, settings, rt, io_counts):
    # Given a PENDING job whose hot view has been quiet for longer than STALL_AFTER_SECONDS (a backlog)
    job_id = _submit(api, 1)[0]
    key = rt.hot.job_key(job_id)
    hot = hotstate.decode(redis_client.hget(key, "job"))
    old = datetime.now(UTC) - timedelta(seconds=settings.stall_after_seconds + 5)
    redis_client.hset(key, "job", hotstate.encode(replace(hot, updated_at=old)))
    rt.hot.mark_checked(job_id, at_ms=0)  # the script loaded (a first EVALSHA costs 3), the mark older than the view
    io_counts.reset()

    first = api.request("GET", f"/jobs?ids={job_id}")
    first_io = (io_counts.redis_round_trips, len(io_counts.mysql_statements))
    io_counts.reset()
    second = api.request("GET", f"/jobs?ids={job_id}")

    # Then the first poll asks MySQL (one query) and marks the view checked (one more round trip)...
    assert first.json["jobs"][0]["status"] == "PENDING" and first_io == (2, 1)
    # ...and the next one is Redis alone again
    assert second.json["jobs"][0]["status"] == "PENDING"
    assert (io_counts.redis_round_trips, io_counts.mysql_statements) == (1, [])


def test_when_redis_is_down_mysql_answers_for_all(settings, api):
    ids = _submit(api, 3)
    runtime_module.use(Runtime(replace(settings, redis_url="redis://127.0.0.1:1/0")))

    reply = api.request("GET", f"/jobs?ids={','.join(ids)}")

    assert reply.status == 200
    assert sorted(_ids(reply)) == sorted(ids)


@pytest.mark.parametrize(
    ("ids", "code"),
    [
        ("", "InvalidRequest"),
        (",".join(["01" + "A" * 24] * 101), "InvalidRequest"),
        ("01" + "A" * 24 + ",", "InvalidJobId"),
        ("01" + "A" * 24 + ",not-a-job", "InvalidJobId"),
        ("1%27%3B%20DROP%20TABLE%20jobs%3B--", "InvalidJobId"),
        ("01" + "A" * 24 + ",%2001" + "B" * 24, "InvalidJobId"),
    ],
    ids=["empty", "101-ids", "trailing-comma", "one-malformed", "injection", "space"],
)
def test_malformed_ids_are_400_and_never_reach_redis_or_mysql(api, io_counts, ids, code):
    api.request("GET", "/jobs")  # warm up
    io_counts.reset()

    reply = api.request("GET", f"/jobs?ids={ids}")

    assert (reply.status, reply.json["code"]) == (400, code)
    assert io_counts.mysql_statements == [] and io_counts.redis_round_trips == 0
