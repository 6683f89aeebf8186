"""Workflows I: batches with one status and a fan-in (`then`), and jobs that wait for others (`dependsOn`).

Given the API and the worker over real MariaDB, Redis and moto's SQS: a batch is stored in one
transaction and sent ten to a request; its status, counts and progress come from one Redis round
trip while hot and from MySQL after a flush; its `then` runs once, after the last member, with the
members' results in its context, or is cancelled with the reason when a member failed (unless
thenOnFailure is "run"); a chain A -> B -> C runs in order; a failed or cancelled dependency
cancels its waiters; a lost release is the sweeper's; another key's ids are unknown ones.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib import tenants
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from tests.conftest import poll_until_finished, put_tenants


def _probe(tag: str, steps: int = 1, **extra) -> dict:
    return {"type": "probe", "payload": {"tag": f"wf-{tag}", "steps": steps, **extra}}


def _drain(events, *, seconds: float = 20.0, until=None) -> None:
    """Let the worker take records until the queue stays empty (or `until()` holds)."""
    deadline = time.monotonic() + seconds
    idle = 0
    while time.monotonic() < deadline:
        records = events.receive(wait_seconds=0)
        if records:
            idle = 0
            events.invoke(records)
        else:
            idle += 1
            if (until is not None and until()) or (until is None and idle >= 3):
                return
            time.sleep(0.05)
    if until is not None:
        pytest.fail("the workflow did not get there in time")


def _statuses(mysql, ids) -> dict[str, str]:
    with mysql.cursor() as cur:
        cur.execute(f"SELECT id, status FROM jobs WHERE id IN ({', '.join(['%s'] * len(ids))})", tuple(ids))
        return {row["id"]: row["status"] for row in cur.fetchall()}


# --- POST /batches ----------------------------------------------------------------------------------
def test_a_batch_is_stored_at_once_and_answers_its_ids_in_order(api, mysql, sqs, settings):
    reply = api.request("POST", "/batches", body={"jobs": [_probe(f"b{i}") for i in range(25)]})

    assert reply.status == 202
    body = reply.json
    assert reply.headers["location"] == f"/batches/{body['batchId']}"
    assert len(body["jobIds"]) == 25 and body["thenJobId"] is None
    assert body["jobIds"] == sorted(body["jobIds"])  # ids sort in the order given
    with mysql.cursor() as cur:
        cur.execute("SELECT id, status, batch_id, sent FROM jobs ORDER BY id")
        rows = cur.fetchall()
    assert [row["id"] for row in rows] == body["jobIds"]
    assert {(row["status"], row["batch_id"], row["sent"]) for row in rows} == {("PENDING", body["batchId"], 1)}
    attributes = sqs.get_queue_attributes(
        QueueUrl=settings.jobs_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == 25
    view = api.request("GET", f"/batches/{body['batchId']}").json
    assert view["status"] == "PENDING" and view["counts"]["PENDING"] == 25 and view["progress"] == 0
    member = api.get(body["jobIds"][3]).json
    assert member["batchId"] == body["batchId"] and member["status"] == "PENDING"


def test_an_invalid_spec_refuses_the_whole_batch_naming_each_by_index(api, mysql):
    jobs = [_probe("ok"), {"type": "nope"}, {"type": "probe", "payload": {}}, {"type": "probe", "colour": 1}]

    reply = api.request("POST", "/batches", body={"jobs": jobs, "then": {"type": "nope"}})

    assert reply.status == 400 and reply.json["code"] == "InvalidRequest"
    assert [e["index"] for e in reply.json["errors"]] == [1, 2, 3, "then"]
    assert "unknown fields: colour" in reply.json["errors"][2]["message"]
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 0


@pytest.mark.parametrize(
    "body, message",
    [
        ({"jobs": []}, "jobs must be a list of 1 to 500"),
        ({"jobs": [_probe("x")] * 501}, "jobs must be a list of 1 to 500"),
        ({"jobs": [_probe("x")], "thenOnFailure": "run"}, "thenOnFailure needs a then job"),
        ({"jobs": [_probe("x")], "then": _probe("t"), "thenOnFailure": "maybe"}, "thenOnFailure must be"),
        ({"jobs": [_probe("x")], "colour": 1}, "unknown fields: colour"),
    ],
)
def test_a_malformed_batch_is_a_400(api, body, message):
    reply = api.request("POST", "/batches", body=body)
    assert reply.status == 400 and message in reply.json["message"]


def test_an_idempotent_batch_is_made_once(api, mysql):
    body = {"jobs": [_probe("i0"), _probe("i1")], "then": _probe("it")}
    first = api.request("POST", "/batches", body=body, headers={"Idempotency-Key": "k1"})
    again = api.request("POST", "/batches", body=body, headers={"Idempotency-Key": "k1"})
    other = api.request("POST", "/batches", body={"jobs": [_probe("i2")]}, headers={"Idempotency-Key": "k1"})

    assert again.status == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    assert other.status == 409
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 3


# --- fan-in --------------------------------------------------------------------------------------
def test_then_runs_once_after_the_last_member_with_their_results(api, events, mysql):
    jobs = [_probe(f"f{i}", steps=i + 1) for i in range(5)]
    submitted = api.request("POST", "/batches", body={"jobs": jobs, "then": {"type": "gather"}}).json
    then_id = submitted["thenJobId"]
    assert api.get(then_id).json["status"] == "WAITING"

    _drain(events, until=lambda: api.get(then_id).json["status"] == "COMPLETED")

    result = api.request("GET", f"/jobs/{then_id}/result").json
    assert result["seen"] == submitted["jobIds"] and result["failed"] == []
    assert result["sum"] == sum(n * (n + 1) // 2 for n in range(1, 6))
    view = api.request("GET", f"/batches/{submitted['batchId']}")
    assert view.json["status"] == "COMPLETED" and view.json["counts"]["COMPLETED"] == 5
    assert view.json["then"] == {"jobId": then_id, "status": "COMPLETED"} and view.json["progress"] == 100
    assert "retry-after" not in view.headers


def test_a_failed_member_cancels_then_with_the_reason(api, events, mysql):
    jobs = [_probe("ok"), _probe("bad", failAtStep=1)]
    body = {"jobs": [dict(job, maxAttempts=1) for job in jobs], "then": _probe("then")}
    submitted = api.request("POST", "/batches", body=body).json

    _drain(events, until=lambda: api.get(submitted["thenJobId"]).json["status"] == "CANCELLED")

    then = api.get(submitted["thenJobId"]).json
    assert then["error"] == f"dependency {submitted['jobIds'][1]} FAILED"
    batch = api.request("GET", f"/batches/{submitted['batchId']}").json
    assert batch["status"] == "FAILED" and batch["counts"]["FAILED"] == 1 and batch["counts"]["COMPLETED"] == 1


def test_then_on_failure_run_runs_it_anyway(api, events):
    jobs = [_probe("ok"), dict(_probe("bad", failAtStep=1), maxAttempts=1)]
    submitted = api.request(
        "POST", "/batches", body={"jobs": jobs, "then": {"type": "gather"}, "thenOnFailure": "run"}
    ).json

    _drain(events, until=lambda: api.get(submitted["thenJobId"]).json["status"] == "COMPLETED")

    result = api.request("GET", f"/jobs/{submitted['thenJobId']}/result").json
    assert result["failed"] == [submitted["jobIds"][1]] and result["sum"] == 1


# --- dependsOn -------------------------------------------------------------------------------------
def test_a_chain_runs_in_order(api, events, mysql):
    a = api.submit("probe", {"tag": "wf-a", "steps": 2}).json["jobId"]
    b = api.submit("probe", {"tag": "wf-b", "steps": 1}, dependsOn=[a]).json
    c = api.submit("probe", {"tag": "wf-c", "steps": 1}, dependsOn=[b["jobId"]]).json
    assert b["status"] == "WAITING" and b["dependsOn"] == [a]

    _drain(events, until=lambda: api.get(c["jobId"]).json["status"] == "COMPLETED")

    views = [api.get(i).json for i in (a, b["jobId"], c["jobId"])]
    assert views[0]["finishedAt"] <= views[1]["startedAt"] and views[1]["finishedAt"] <= views[2]["startedAt"]


def test_a_cancelled_dependency_cancels_its_waiters_in_turn(api, mysql):
    a = api.submit("probe", {"tag": "wf-a", "steps": 1}).json["jobId"]
    b = api.submit("probe", {"tag": "wf-b", "steps": 1}, dependsOn=[a]).json["jobId"]
    c = api.submit("probe", {"tag": "wf-c", "steps": 1}, dependsOn=[b]).json["jobId"]

    assert api.cancel(a).status == 200

    assert _statuses(mysql, [a, b, c]) == {a: "CANCELLED", b: "CANCELLED", c: "CANCELLED"}
    assert api.get(b).json["error"] == f"dependency {a} CANCELLED"
    assert api.get(c).json["error"] == f"dependency {b} CANCELLED"


def test_a_dependency_already_completed_releases_at_once(api, events):
    a = api.submit("probe", {"tag": "wf-a", "steps": 1}).json["jobId"]
    poll_until_finished(events, api, a)

    b = api.submit("probe", {"tag": "wf-b", "steps": 1}, dependsOn=[a])

    assert b.status == 202 and b.json["status"] == "PENDING"
    assert poll_until_finished(events, api, b.json["jobId"])["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "depends_on, message",
    [
        ([], "dependsOn must be a list of 1 to 50"),
        (["x"] * 51, "dependsOn must be a list of 1 to 50"),
        ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "dependsOn must be a list"),
        (["nope"], "'nope' is not a job id"),
        (["01ARZ3NDEKTSV4RRFFQ69G5FAV"], "dependsOn: no job 01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    ],
)
def test_bad_dependencies_are_a_400_naming_them(api, depends_on, message):
    reply = api.submit("probe", {"tag": "wf-x", "steps": 1}, dependsOn=depends_on)
    assert reply.status == 400 and message in reply.json["message"]


def test_another_keys_job_is_an_unknown_dependency(api):
    theirs = api.submit("probe", {"tag": "wf-t", "steps": 1}, key="key-b").json["jobId"]

    reply = api.submit("probe", {"tag": "wf-x", "steps": 1}, dependsOn=[theirs])

    assert reply.status == 400 and reply.json["message"] == f"dependsOn: no job {theirs}"
    batch = api.request("POST", "/batches", key="key-b", body={"jobs": [_probe("b")]}).json["batchId"]
    assert api.request("GET", f"/batches/{batch}").status == 404
    assert api.request("DELETE", f"/batches/{batch}").status == 404


def test_members_depend_on_earlier_members_by_index(api, events, mysql):
    jobs = [_probe("m0"), dict(_probe("m1"), dependsOn=[0]), dict(_probe("m2"), dependsOn=[0, 1])]
    submitted = api.request("POST", "/batches", body={"jobs": jobs}).json
    ids = submitted["jobIds"]
    assert _statuses(mysql, ids) == {ids[0]: "PENDING", ids[1]: "WAITING", ids[2]: "WAITING"}
    assert api.get(ids[2]).json["dependsOn"] == [ids[0], ids[1]]

    _drain(events, until=lambda: api.request("GET", f"/batches/{submitted['batchId']}").json["status"] == "COMPLETED")

    views = [api.get(i).json for i in ids]
    assert views[0]["finishedAt"] <= views[1]["startedAt"] and views[1]["finishedAt"] <= views[2]["startedAt"]
    forward = api.request("POST", "/batches", body={"jobs": [dict(_probe("x"), dependsOn=[0])]})
    assert forward.status == 400 and forward.json["errors"][0]["index"] == 0


# --- GET and DELETE /batches/{id} -----------------------------------------------------------------
def test_a_hot_batch_is_one_redis_round_trip_and_mysql_after_a_flush(api, io_counts, redis_client, settings):
    submitted = api.request("POST", "/batches", body={"jobs": [_probe(f"h{i}") for i in range(20)]}).json
    path = f"/batches/{submitted['batchId']}"
    api.request("GET", path)  # the connection made and the script loaded

    io_counts.reset()
    hot = api.request("GET", path).json
    assert io_counts.redis_round_trips == 1 and io_counts.mysql_statements == []

    for key in redis_client.scan_iter(match=settings.redis_prefix + "*"):
        redis_client.delete(key)
    io_counts.reset()
    cold = api.request("GET", path).json
    assert len(io_counts.mysql_statements) == 2
    assert cold == hot


def test_delete_cancels_every_unfinished_job_and_then_first(api, mysql):
    submitted = api.request("POST", "/batches", body={"jobs": [_probe("d0"), _probe("d1")], "then": _probe("t")}).json

    reply = api.request("DELETE", f"/batches/{submitted['batchId']}")

    assert reply.status == 200 and reply.json["status"] == "CANCELLED" and reply.json["cancelled"] is True
    assert set(_statuses(mysql, [*submitted["jobIds"], submitted["thenJobId"]]).values()) == {"CANCELLED"}
    assert api.get(submitted["thenJobId"]).json["error"] is None  # cancelled by the DELETE, not by a member


def test_the_sweeper_settles_a_waiter_whose_release_was_lost(api, events, rt, mysql, redis_client, settings):
    a = api.submit("probe", {"tag": "wf-a", "steps": 1}).json["jobId"]
    b = api.submit("probe", {"tag": "wf-b", "steps": 1}, dependsOn=[a]).json["jobId"]
    redis_client.delete(rt.hot.waiters_key(a))  # as a flush would: a's end will not find b
    poll_until_finished(events, api, a)
    assert _statuses(mysql, [b]) == {b: "WAITING"}

    with mysql.cursor() as cur:
        cur.execute("UPDATE jobs SET updated_at = updated_at - INTERVAL 1 HOUR WHERE id = %s", (b,))
    mysql.commit()
    assert rt.sweeper.sweep().waiting_settled == 1

    assert poll_until_finished(events, api, b)["status"] == "COMPLETED"


# --- a plan's limits --------------------------------------------------------------------------------
@pytest.fixture
def small_plan(settings, s3, bucket, rt):
    """acme (key-a) may have 6 unfinished jobs, 1 running at once."""
    document = tenants.document({"acme": ("small", ["key-a"], Limits(6, 1, 3600))})
    runtime = Runtime(replace(settings, tenants_url=put_tenants(s3, bucket, document)))
    runtime_module.use(runtime)
    return runtime


def test_a_batch_over_max_active_jobs_is_refused_whole_and_members_over_the_room_are_held(
    small_plan, api, mysql, sqs, settings
):
    over = api.request("POST", "/batches", body={"jobs": [_probe(f"o{i}") for i in range(6)], "then": _probe("t")})

    assert over.status == 429 and over.json["code"] == "ActiveJobLimit" and over.headers["retry-after"]
    assert "this batch would add 7" in over.json["message"]
    with mysql.cursor() as cur:
        cur.execute(
            "SELECT (SELECT COUNT(*) FROM jobs) AS jobs, (SELECT COUNT(*) FROM batches) AS batches,"
            " (SELECT COUNT(*) FROM job_dependencies) AS deps"
        )
        assert cur.fetchone() == {"jobs": 0, "batches": 0, "deps": 0}

    submitted = api.request("POST", "/batches", body={"jobs": [_probe(f"k{i}") for i in range(5)]}).json
    with mysql.cursor() as cur:
        cur.execute("SELECT id, held FROM jobs ORDER BY id")
        held = [row["held"] for row in cur.fetchall()]
    assert held == [0, 0, 1, 1, 1]  # room: twice maxRunningJobs queued or running, the rest held
    attributes = sqs.get_queue_attributes(
        QueueUrl=settings.jobs_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == 2
    assert api.get(submitted["jobIds"][-1]).json["message"].startswith("waiting for a free slot")
    assert api.request("GET", "/limits").json["usage"]["heldJobs"] == 3


def test_then_reads_a_members_large_result_from_its_object(settings, bucket, api, events):
    runtime_module.use(Runtime(replace(settings, results_bucket=bucket, inline_result_bytes=1000)))
    jobs = [_probe("small"), _probe("large", resultBytes=5000)]
    submitted = api.request("POST", "/batches", body={"jobs": jobs, "then": {"type": "gather"}}).json
    assert api.get(submitted["jobIds"][1]).json.get("resultUrl") is None  # not ended yet

    _drain(events, until=lambda: api.get(submitted["thenJobId"]).json["status"] == "COMPLETED")

    assert api.get(submitted["jobIds"][1]).json["resultUrl"]  # the large one is an object...
    result = api.request("GET", f"/jobs/{submitted['thenJobId']}/result").json
    assert result["seen"] == submitted["jobIds"] and result["sum"] == 2  # ... read by then all the same


def test_bulk_cancel_by_batch_id_cancels_only_that_batchs_jobs(api, mysql):
    mine = api.request("POST", "/batches", body={"jobs": [_probe("x0"), _probe("x1")], "then": _probe("xt")}).json
    other = api.request("POST", "/batches", body={"jobs": [_probe("y0")]}).json
    theirs = api.request("POST", "/batches", key="key-b", body={"jobs": [_probe("z0")]}).json

    done = api.request("POST", "/jobs/cancel", body={"batchId": mine["batchId"]})
    none = api.request("POST", "/jobs/cancel", body={"batchId": theirs["batchId"]})
    bad = api.request("POST", "/jobs/cancel", body={"batchId": "nope"})

    assert (done.status, done.json) == (200, {"cancelled": 3, "nextCursor": None})
    assert none.json == {"cancelled": 0, "nextCursor": None}  # another key's batch: as an unknown one
    assert bad.status == 400 and bad.json["message"] == "batchId is not a batch id"
    statuses = _statuses(mysql, [*mine["jobIds"], mine["thenJobId"], *other["jobIds"], *theirs["jobIds"]])
    assert [statuses[i] for i in (*mine["jobIds"], mine["thenJobId"])] == ["CANCELLED"] * 3
    assert statuses[other["jobIds"][0]] == statuses[theirs["jobIds"][0]] == "PENDING"
