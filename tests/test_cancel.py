"""DELETE /jobs/{id}: at once while PENDING, at the next chunk boundary while RUNNING."""

import threading

from tests.conftest import Probe, wait_until


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT status, attempts, started_at, cancel_requested FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def test_cancel_while_pending_is_immediate_and_the_job_never_runs(api, events, mysql):
    job_id = api.submit("probe", {"steps": 3, "tag": "cancel-pending"}).json["jobId"]

    reply = api.cancel(job_id)

    assert reply.status == 200
    assert reply.json["status"] == "CANCELLED" and reply.json["finishedAt"]
    assert api.get(job_id).json["status"] == "CANCELLED"
    assert events.drain() == 1  # the message is consumed...
    assert "cancel-pending" not in Probe.started  # ...and no chunk ran
    row = _row(mysql, job_id)
    assert row["status"] == "CANCELLED" and row["attempts"] == 0 and row["started_at"] is None


def test_cancel_while_running_stops_within_one_chunk(api, events, mysql):
    job_id = api.submit("probe", {"steps": 200, "stepMs": 20, "tag": "cancel-running"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(job_id).json["progress"] >= 2)

    reply = api.cancel(job_id)
    started_by_then = len(Probe.started["cancel-running"])
    worker.join(30)

    assert reply.status == 202
    assert reply.json["status"] == "RUNNING" and reply.json["cancelRequested"] is True
    assert reply.json["progress"] >= 1  # the live view from Redis, not the row's start state
    assert "retry-after" in reply.headers
    assert len(Probe.started["cancel-running"]) <= started_by_then + 1
    job = api.get(job_id).json
    assert job["status"] == "CANCELLED" and job["cancelRequested"] is True
    assert job["progress"] < 100
    assert _row(mysql, job_id)["status"] == "CANCELLED"


def test_a_cancel_recorded_in_mysql_is_honoured_when_the_job_is_picked_up_again(api, events, mysql, redis_client, rt):
    job_id = api.submit("probe", {"steps": 5, "tag": "cancel-durable"}).json["jobId"]
    with mysql.cursor() as cur:  # a worker had started it, then Redis lost everything
        cur.execute("UPDATE jobs SET status = 'RUNNING', cancel_requested = TRUE WHERE id = %s", (job_id,))
    redis_client.delete(rt.hot.job_key(job_id))

    events.drain()

    assert "cancel-durable" not in Probe.started
    assert api.get(job_id).json["status"] == "CANCELLED"


def test_repeating_a_cancel_is_harmless(api, events):
    pending = api.submit("sleep", {"steps": 1}).json["jobId"]
    assert api.cancel(pending).status == 200
    again = api.cancel(pending)
    assert again.status == 200 and again.json["status"] == "CANCELLED"


def test_cancel_of_a_finished_job_is_409_with_its_state(api, events):
    job_id = api.submit("sleep", {"steps": 1, "stepMs": 0}).json["jobId"]
    events.drain()

    reply = api.cancel(job_id)

    assert reply.status == 409
    assert reply.json["code"] == "JobFinished"
    assert reply.json["status"] == "COMPLETED"
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_another_api_key_cannot_cancel_the_job(api, events):
    job_id = api.submit("sleep", {"steps": 1}, key="key-a").json["jobId"]

    reply = api.cancel(job_id, key="key-b")

    assert reply.status == 404
    assert api.get(job_id, key="key-a").json["status"] == "PENDING"


def test_cancel_of_a_bad_or_unknown_id(api):
    assert api.cancel("nope").status == 400
    assert api.cancel("01" + "A" * 24).status == 404
