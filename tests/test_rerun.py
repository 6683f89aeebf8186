"""POST /jobs/{id}/retry: a FAILED or CANCELLED job runs again under its id, from its checkpoint.

Given real MariaDB, Redis and moto's SQS, and the probe type counting the chunks it starts (in this
process, or in a worker process's log), when a failed or cancelled job is retried it resumes from
the checkpoint its final write kept (chunks done are not run again) or, with fromStart, runs every
chunk again; it reads PENDING at once with the error before as previousError, and completes; any
other state is a 409; of two retries at once one runs; another key's job is a 404 like an unknown
one; a retry counts toward maxActiveJobs; a stale final view in Redis does not stop the new run. A
job that waits for others is WAITING again while one has not ended, and a 409 naming the one that
did not complete, until that one is retried.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib import tenants
from chalicelib.hotstate import FINAL_SEQ, decode
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from local import services, worker_process
from tests.conftest import Probe, put_tenants, wait_until
from tests.support.probe import logged_steps

# Chunk 4 fails once; with one attempt the job is FAILED after chunks 1-3, at 50 %.
FAILS_ONCE = {"steps": 6, "failAtStep": 4, "failTimes": 1}


def _row(mysql, job_id):
    mysql.commit()
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def _retry(api, job_id, body=None, *, key="key-a"):
    return api.request("POST", f"/jobs/{job_id}/retry", key=key, body=body)


def _failed(api, events, tag: str) -> str:
    job_id = api.submit("probe", {**FAILS_ONCE, "tag": tag}, maxAttempts=1).json["jobId"]
    events.drain()
    job = api.get(job_id).json
    assert (job["status"], job["progress"]) == ("FAILED", 50), job
    return job_id


# --- resuming -------------------------------------------------------------------------------------
def test_a_failed_job_retried_resumes_from_its_checkpoint_and_keeps_the_error_as_previous_error(api, events, mysql):
    job_id = _failed(api, events, "rerun-resume")
    failed = _row(mysql, job_id)
    assert json.loads(failed["checkpoint"])["state"]["done"] == 3  # the final write kept the newest checkpoint

    reply = _retry(api, job_id)

    assert reply.status == 202 and "retry-after" in reply.headers
    view = reply.json
    assert (view["status"], view["attempts"], view["error"], view["progress"]) == ("PENDING", 0, None, 50)
    assert view["previousError"] == failed["error"] and "probe failed at step 4" in view["previousError"]
    assert view["finishedAt"] is None and view["startedAt"] is None and view["cancelRequested"] is False
    assert api.get(job_id).json["status"] == "PENDING"  # the final view was replaced, not kept
    assert events.drain() == 1
    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["result"]["sum"] == 21
    assert job["attempts"] == 1 and job["error"] is None and job["previousError"] == failed["error"]
    assert Probe.started["rerun-resume"] == [1, 2, 3, 4, 4, 5, 6]  # only the chunk that failed ran again
    assert _row(mysql, job_id)["previous_error"] == failed["error"]


def test_from_start_discards_the_checkpoint_and_runs_every_chunk_again(api, events, mysql):
    job_id = _failed(api, events, "rerun-from-start")

    reply = _retry(api, job_id, {"fromStart": True})

    assert reply.status == 202 and (reply.json["progress"], reply.json["progressDetail"]) == (0, None)
    assert _row(mysql, job_id)["checkpoint"] is None
    events.drain()
    job = api.get(job_id).json  # the message carried the row: its views keep the error before too
    assert job["status"] == "COMPLETED" and job["previousError"] == reply.json["previousError"] is not None
    assert Probe.started["rerun-from-start"] == [1, 2, 3, 4, 1, 2, 3, 4, 5, 6]


def test_a_job_cancelled_while_running_resumes_after_the_chunk_it_stopped_at(api, events, mysql):
    job_id = api.submit("probe", {"steps": 12, "stepMs": 30, "tag": "rerun-cancelled"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(job_id).json["progress"] >= 25)
    assert api.cancel(job_id).status == 202
    worker.join(30)
    ran = list(Probe.started["rerun-cancelled"])
    assert api.get(job_id).json["status"] == "CANCELLED" and len(ran) < 12

    reply = _retry(api, job_id)
    events.drain()

    assert reply.status == 202 and reply.json["cancelRequested"] is False
    assert reply.json["previousError"] is None  # a cancel has no error to keep
    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["result"]["sum"] == 78
    assert Probe.started["rerun-cancelled"] == ran + list(range(len(ran) + 1, 13))  # no chunk twice
    assert _row(mysql, job_id)["cancel_requested"] == 0


def test_a_worker_process_runs_a_retried_job_from_its_checkpoint(api, events, settings, tmp_path, mysql):
    job_id = _failed(api, events, "rerun-process")  # here, after chunks 1-3
    with mysql.cursor() as cur:  # the process counts its own passes: its first of chunk 4 must not fail
        cur.execute("UPDATE jobs SET payload = JSON_REMOVE(payload, '$.failAtStep') WHERE id = %s", (job_id,))
    mysql.commit()
    proc = worker_process.start(settings, PROBE_LOG=str(tmp_path))
    try:
        assert _retry(api, job_id).status == 202
        job = wait_until(lambda: (j := api.get(job_id).json)["status"] == "COMPLETED" and j, timeout=30)
    finally:
        services.stop(proc, timeout=5)

    assert job["result"]["sum"] == 21
    assert [step for _, step in logged_steps(tmp_path, "rerun-process")] == [4, 5, 6]  # in the process: not 1-3
    assert Probe.started["rerun-process"] == [1, 2, 3, 4]  # in this one, before the retry


def test_a_retried_job_fails_again_with_previous_error_kept(api, events):
    job_id = api.submit("probe", {"steps": 3, "failAtStep": 2, "tag": "rerun-fails"}, maxAttempts=1).json["jobId"]
    events.drain()
    first = api.get(job_id).json["error"]

    _retry(api, job_id)
    events.drain()

    job = api.get(job_id).json
    assert (job["status"], job["error"], job["previousError"]) == ("FAILED", first, first)
    assert Probe.started["rerun-fails"] == [1, 2, 2]


def test_a_stale_final_view_left_in_redis_does_not_stop_the_retried_run(api, events, rt, redis_client):
    job_id = _failed(api, events, "rerun-stale")
    final = redis_client.hgetall(rt.hot.job_key(job_id))
    assert int(final["seq"]) == FINAL_SEQ

    assert _retry(api, job_id).status == 202
    assert int(redis_client.hget(rt.hot.job_key(job_id), "seq")) == 0
    assert decode(redis_client.hget(rt.hot.job_key(job_id), "job")).status.value == "PENDING"
    redis_client.hset(rt.hot.job_key(job_id), mapping=final)  # as if the reset had missed Redis
    events.drain()

    assert api.get(job_id).json["status"] == "COMPLETED"
    assert Probe.started["rerun-stale"] == [1, 2, 3, 4, 4, 5, 6]


def test_a_retried_batch_member_reopens_its_batch(api, events):
    member = {"type": "probe", "payload": {**FAILS_ONCE, "tag": "rerun-member"}, "maxAttempts": 1}
    batch = api.request("POST", "/batches", body={"jobs": [member]}).json
    events.drain()
    assert api.request("GET", f"/batches/{batch['batchId']}").json["status"] == "FAILED"

    assert _retry(api, batch["jobIds"][0]).status == 202
    reopened = api.request("GET", f"/batches/{batch['batchId']}").json
    events.drain()

    assert reopened["status"] in ("PENDING", "RUNNING") and reopened["counts"]["FAILED"] == 0
    done = api.request("GET", f"/batches/{batch['batchId']}").json
    assert done["status"] == "COMPLETED" and done["counts"]["COMPLETED"] == 1


# --- jobs that wait for others ---------------------------------------------------------------------
def test_a_waiter_cancelled_before_its_dependency_ended_waits_for_it_again_when_retried(api, events, mysql):
    first = api.submit("probe", {"steps": 2, "tag": "rerun-dep-first"}).json["jobId"]
    waiter = api.submit("probe", {"steps": 1, "tag": "rerun-dep-waiter"}, dependsOn=[first]).json["jobId"]
    assert api.cancel(waiter).status == 200

    reply = _retry(api, waiter)

    # Not run ahead of the job it depends on: WAITING again, unsent, then released by its end
    assert (reply.status, reply.json["status"], reply.json["dependsOn"]) == (202, "WAITING", [first])
    row = _row(mysql, waiter)
    assert (row["status"], row["sent"]) == ("WAITING", 0)
    assert api.get(waiter).json["status"] == "WAITING"
    events.drain()
    views = {job_id: api.get(job_id).json for job_id in (first, waiter)}
    assert [views[j]["status"] for j in (first, waiter)] == ["COMPLETED", "COMPLETED"]
    assert views[first]["finishedAt"] <= views[waiter]["startedAt"]
    assert Probe.started["rerun-dep-waiter"] == [1]


def test_a_waiter_whose_dependency_failed_is_a_409_naming_it_until_that_one_is_retried(api, events, mysql):
    first = api.submit("probe", {**FAILS_ONCE, "tag": "rerun-dep-failing"}, maxAttempts=1).json["jobId"]
    waiter = api.submit("probe", {"steps": 1, "tag": "rerun-dep-blocked"}, dependsOn=[first]).json["jobId"]
    events.drain()
    assert api.get(waiter).json["error"] == f"dependency {first} FAILED"

    refused = _retry(api, waiter)

    assert (refused.status, refused.json["code"], refused.json["status"]) == (409, "JobNotRetryable", "CANCELLED")
    assert refused.json["message"] == f"job {waiter} depends on {first}, which is FAILED: retry that job first"
    assert _row(mysql, waiter)["status"] == "CANCELLED" and "rerun-dep-blocked" not in Probe.started
    # Once the dependency is retried and completes, the waiter's retry runs it
    assert _retry(api, first).status == 202
    events.drain()
    assert api.get(first).json["status"] == "COMPLETED"
    retried = _retry(api, waiter)
    assert (retried.status, retried.json["status"]) == (202, "PENDING")
    events.drain()
    assert api.get(waiter).json["status"] == "COMPLETED" and Probe.started["rerun-dep-blocked"] == [1]


def test_a_then_cancelled_while_its_members_run_waits_for_them_again_when_retried(api, events, mysql):
    members = [{"type": "probe", "payload": {"steps": 1, "tag": f"rerun-then-member-{i}"}} for i in range(2)]
    then = {"type": "probe", "payload": {"steps": 1, "tag": "rerun-then"}}
    batch = api.request("POST", "/batches", body={"jobs": members, "then": then}).json
    assert api.cancel(batch["thenJobId"]).status == 200

    reply = _retry(api, batch["thenJobId"])

    assert (reply.status, reply.json["status"]) == (202, "WAITING")
    events.drain()
    views = [api.get(job_id).json for job_id in [*batch["jobIds"], batch["thenJobId"]]]
    assert [view["status"] for view in views] == ["COMPLETED"] * 3
    assert max(view["finishedAt"] for view in views[:2]) <= views[2]["startedAt"]
    assert Probe.started["rerun-then"] == [1]


# --- refusals ---------------------------------------------------------------------------------------
def test_a_pending_running_or_completed_job_is_a_409_naming_its_status(api, events):
    pending = api.submit("probe", {"steps": 1, "tag": "rerun-pending"}).json["jobId"]
    assert (_retry(api, pending).status, _retry(api, pending).json["status"]) == (409, "PENDING")

    running = api.submit("probe", {"steps": 2, "gateAtStep": 1, "tag": "rerun-running"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(running).json["status"] == "RUNNING" and "rerun-running" in Probe.started)
    reply = _retry(api, running)
    Probe.gates["rerun-running"].set()
    worker.join(30)

    assert reply.status == 409 and reply.json["code"] == "JobNotRetryable" and reply.json["status"] == "RUNNING"
    assert reply.json["message"] == f"job {running} is RUNNING: only a FAILED or CANCELLED job can be retried"
    completed = _retry(api, running)
    assert (completed.status, completed.json["status"]) == (409, "COMPLETED")
    assert api.get(running).json["status"] == "COMPLETED" and Probe.started["rerun-running"] == [1, 2]


def test_two_retries_at_once_make_one_run(api, events, mysql):
    job_id = _failed(api, events, "rerun-twice")
    start = threading.Barrier(2)
    replies = []

    def retry():
        start.wait()
        replies.append(_retry(api, job_id))

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status for r in replies) == [202, 409]
    assert events.drain() == 1  # one message sent
    assert Probe.started["rerun-twice"] == [1, 2, 3, 4, 4, 5, 6]
    assert _row(mysql, job_id)["attempts"] == 1


def test_another_keys_job_is_a_404_like_an_unknown_one(api, events, mysql):
    job_id = _failed(api, events, "rerun-isolated")
    unknown = "01" + job_id[2:-1] + ("0" if job_id[-1] != "0" else "1")

    theirs, missing = _retry(api, job_id, key="key-b"), _retry(api, unknown, key="key-b")

    assert theirs.status == missing.status == 404
    assert theirs.json == {"code": "JobNotFound", "message": f"no job {job_id}"}
    assert missing.json == {"code": "JobNotFound", "message": f"no job {unknown}"}
    assert _row(mysql, job_id)["status"] == "FAILED"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"fromStart": "yes"}, 'the body must be {"fromStart": true|false} or empty'),
        ({"from": True}, 'the body must be {"fromStart": true|false} or empty'),
        ([True], 'the body must be {"fromStart": true|false} or empty'),
    ],
)
def test_a_body_other_than_from_start_is_a_400_and_changes_nothing(api, events, mysql, body, message):
    job_id = _failed(api, events, f"rerun-bad-body-{json.dumps(body)}")

    reply = _retry(api, job_id, body)

    assert (reply.status, reply.json["message"]) == (400, message)
    assert _row(mysql, job_id)["status"] == "FAILED"


def test_a_retry_counts_toward_max_active_jobs(settings, s3, bucket, api, events, mysql):
    url = put_tenants(s3, bucket, tenants.document({"acme": ("small", ["key-a"], Limits(2, 2, 600))}))
    runtime_module.use(Runtime(replace(settings, tenants_url=url)))
    job_id = _failed(api, events, "rerun-limited")
    busy = [api.submit("probe", {"steps": 1, "tag": f"busy-{i}"}).json["jobId"] for i in range(2)]

    refused = _retry(api, job_id)

    assert refused.status == 429 and refused.json["code"] == "ActiveJobLimit" and refused.json["maxActiveJobs"] == 2
    assert refused.headers["retry-after"] == "5"
    assert _row(mysql, job_id)["status"] == "FAILED" and _row(mysql, job_id)["error"]  # nothing changed
    events.drain()
    assert all(api.get(b).json["status"] == "COMPLETED" for b in busy)
    assert _retry(api, job_id).status == 202
    events.drain()
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_racing_retries_never_take_the_owner_over_max_active_jobs(settings, s3, bucket, api, events, mysql):
    # Given a plan of 2 unfinished jobs, one of them busy, and six failed jobs: room for one retry
    url = put_tenants(s3, bucket, tenants.document({"acme": ("small", ["key-a"], Limits(2, 2, 600))}))
    rt = Runtime(replace(settings, tenants_url=url))
    runtime_module.use(rt)
    failed = [_failed(api, events, f"rerun-race-{i}") for i in range(6)]
    before = {job_id: _row(mysql, job_id) for job_id in failed}
    api.submit("probe", {"steps": 1, "tag": "rerun-race-busy"})
    start, counted = threading.Barrier(len(failed)), threading.Barrier(len(failed), timeout=10)
    count_active = rt.store.count_active

    def count_all_at_once(owner):
        # Every retry counts before any goes on: the widest race there can be
        counts = count_active(owner)
        counted.wait()
        return counts

    rt.store.count_active = count_all_at_once
    replies = {}

    def retry(job_id):
        start.wait()
        replies[job_id] = _retry(api, job_id)

    # When all six are retried at once
    threads = [threading.Thread(target=retry, args=(job_id,)) for job_id in failed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then at most one got in (counts that race refuse more than they must, here all, never fewer),
    # and each refused one is exactly as it was
    retried = [job_id for job_id, reply in replies.items() if reply.status == 202]
    assert len(retried) <= 1 and {r.status for r in replies.values()} <= {202, 429}
    mysql.commit()
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs WHERE owner = 'acme' AND status IN ('PENDING', 'RUNNING')")
        assert cur.fetchone()["n"] == 1 + len(retried)
    for job_id in set(failed) - set(retried):
        assert _row(mysql, job_id) == before[job_id]
