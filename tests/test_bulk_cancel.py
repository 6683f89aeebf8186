"""POST /jobs/cancel: the caller's unfinished jobs that match a filter, in bulk statements.

Given real MariaDB, Redis and moto's SQS, when a client cancels by type or status its matching
unstarted jobs are CANCELLED at once (rows and Redis views) and never run, its RUNNING ones are
asked to stop and do at their next chunk, another client's and other types' jobs are untouched;
a call cancels at most the service's bound and its cursor goes on from there; the statements and
round trips of a call do not grow with the number of jobs; an empty filter is a 400.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib import tenants
from chalicelib.hotstate import FINAL_SEQ
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from tests.conftest import Probe, put_tenants, wait_until


def _cancel(api, body, *, key="key-a"):
    return api.request("POST", "/jobs/cancel", key=key, body=body)


def _statuses(mysql, job_ids):
    mysql.commit()
    with mysql.cursor() as cur:
        cur.execute(
            f"SELECT id, status, cancel_requested FROM jobs WHERE id IN ({', '.join(['%s'] * len(job_ids))})", job_ids
        )
        rows = {row["id"]: row for row in cur.fetchall()}
    return [rows[job_id]["status"] for job_id in job_ids]


def _submit(api, n, *, tag, job_type="probe", key="key-a"):
    payloads = [{"steps": 1} | ({"tag": f"bulk-{tag}-{i}"} if job_type == "probe" else {}) for i in range(n)]
    return [api.submit(job_type, payload, key=key).json["jobId"] for payload in payloads]


def test_cancel_by_type_cancels_only_the_callers_jobs_of_that_type(api, events, mysql, rt, redis_client):
    mine = _submit(api, 3, tag="mine")
    sleeps = _submit(api, 2, tag="sleep", job_type="sleep")
    theirs = _submit(api, 2, tag="theirs", key="key-b")

    reply = _cancel(api, {"type": "probe"})

    assert (reply.status, reply.json) == (200, {"cancelled": 3, "nextCursor": None})
    assert _statuses(mysql, mine) == ["CANCELLED"] * 3
    assert _statuses(mysql, sleeps + theirs) == ["PENDING"] * 4
    for job_id in mine:  # the final views, in Redis: polls never see PENDING again
        assert int(redis_client.hget(rt.hot.job_key(job_id), "seq")) == FINAL_SEQ
        view = api.get(job_id).json
        assert (view["status"], view["message"]) == ("CANCELLED", "cancelled before it started")
        assert view["finishedAt"] is not None
    events.drain()
    assert not any(f"bulk-mine-{i}" in Probe.started for i in range(3))  # never ran
    assert _statuses(mysql, sleeps + theirs) == ["COMPLETED"] * 4
    assert _cancel(api, {"type": "probe"}).json == {"cancelled": 0, "nextCursor": None}


def test_the_jobs_waiting_for_a_job_cancelled_in_bulk_are_cancelled_with_the_reason(api, events, mysql):
    first = _submit(api, 1, tag="depended")[0]
    waiter = api.submit("sleep", {"steps": 1}, dependsOn=[first]).json
    assert waiter["status"] == "WAITING"

    assert _cancel(api, {"type": "probe"}).json == {"cancelled": 1, "nextCursor": None}

    assert _statuses(mysql, [first, waiter["jobId"]]) == ["CANCELLED", "CANCELLED"]
    view = api.get(waiter["jobId"]).json
    assert (view["status"], view["error"]) == ("CANCELLED", f"dependency {first} CANCELLED")


def test_a_call_cancels_at_most_its_bound_and_the_cursor_goes_on(api, rt, mysql):
    rt.service.bulk.limit = 2
    job_ids = _submit(api, 5, tag="bounded")

    first = _cancel(api, {"status": "PENDING"})
    second = _cancel(api, {"status": "PENDING", "cursor": first.json["nextCursor"]})
    third = _cancel(api, {"status": "PENDING", "cursor": second.json["nextCursor"]})

    assert first.json == {"cancelled": 2, "nextCursor": job_ids[3]}  # newest first
    assert second.json == {"cancelled": 2, "nextCursor": job_ids[1]}
    assert third.json == {"cancelled": 1, "nextCursor": None}
    assert _statuses(mysql, job_ids) == ["CANCELLED"] * 5


def test_running_jobs_are_asked_to_stop_and_stop_at_their_next_chunk(api, events, mysql):
    running = api.submit("probe", {"steps": 200, "stepMs": 20, "tag": "bulk-running"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(running).json["progress"] >= 2)
    queued = api.submit("probe", {"steps": 1, "tag": "bulk-queued"}).json["jobId"]

    reply = _cancel(api, {"type": "probe"})
    started_by_then = len(Probe.started["bulk-running"])
    assert _cancel(api, {"type": "probe"}).json == {"cancelled": 0, "nextCursor": None}  # flagged: matched no more
    worker.join(30)

    assert reply.json == {"cancelled": 2, "nextCursor": None}
    assert len(Probe.started["bulk-running"]) <= started_by_then + 1
    assert "bulk-queued" not in Probe.started
    assert _statuses(mysql, [running, queued]) == ["CANCELLED", "CANCELLED"]
    job = api.get(running).json
    assert (job["status"], job["cancelRequested"], job["message"]) == ("CANCELLED", True, "cancelled while running")


def test_the_room_cancelled_jobs_made_releases_as_many_held_ones(settings, s3, bucket, api, events, mysql):
    # One running at once: two are queued, the rest held (holds.py).
    url = put_tenants(s3, bucket, tenants.document({"acme": ("small", ["key-a"], Limits(10, 1, 600))}))
    runtime_module.use(Runtime(replace(settings, tenants_url=url)))
    queued = _submit(api, 2, tag="room")
    held = _submit(api, 3, tag="held", job_type="sleep")
    assert [api.get(job_id).json["message"] for job_id in held][0].startswith("waiting for a free slot")

    assert _cancel(api, {"type": "probe"}).json == {"cancelled": 2, "nextCursor": None}

    assert _statuses(mysql, queued) == ["CANCELLED"] * 2
    with mysql.cursor() as cur:
        cur.execute("SELECT id FROM jobs WHERE held")
        assert [row["id"] for row in cur.fetchall()] == held[2:]  # the two oldest were released
    assert events.drain() == 5  # the cancelled ones' messages (dropped), the released ones, and the last
    assert _statuses(mysql, held) == ["COMPLETED"] * 3


@pytest.mark.parametrize("count", [3, 30])
def test_the_statements_of_a_call_do_not_grow_with_its_jobs(api, rt, io_counts, count):
    _submit(api, count, tag=f"counted-{count}")
    rt.hot.ping()  # the pool's connection is made (its set-up is not the call's)
    io_counts.reset()

    reply = _cancel(api, {"status": "PENDING"})

    assert reply.json["cancelled"] == count
    verbs = [statement.split()[0].upper() for statement in io_counts.mysql_statements]
    assert verbs == ["SELECT", "UPDATE"]  # the matching jobs, then one guarded UPDATE for all
    assert io_counts.redis_round_trips == 2  # the final views: one pipeline, after redis-py's SCRIPT EXISTS


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "give status, type, batchId or several: an empty filter would cancel every job"),
        (
            {"cursor": "01M8TPJDQG3GZM9RQ6W0DHV3Y9"},
            "give status, type, batchId or several: an empty filter would cancel every job",
        ),
        ({"status": "COMPLETED"}, "status must be one of SCHEDULED, WAITING, PENDING, RUNNING"),
        ({"type": "nope"}, None),
        ({"type": "probe", "batch": "x"}, "unknown fields: batch"),
        ({"type": "probe", "cursor": "not-a-cursor"}, "cursor is not one this API returned"),
    ],
)
def test_an_empty_or_bad_filter_is_a_400_and_cancels_nothing(api, mysql, body, message):
    job_ids = _submit(api, 2, tag="kept")

    reply = _cancel(api, body)

    assert reply.status == 400
    assert message is None or reply.json["message"] == message
    assert _statuses(mysql, job_ids) == ["PENDING", "PENDING"]
