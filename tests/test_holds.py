"""Held jobs: a client's backlog beyond its running cap waits in MySQL, not in the shared queue.

Given the API and the worker over real MariaDB, Redis and moto's SQS, with a tenants document in
moto's S3, when a client submits more jobs than twice its maxRunningJobs, then
the rest are stored PENDING, held, unsent, saying why; each end of one of its jobs sends the oldest
held one, until all have run; a cancelled held job frees nothing; a stray message does not start a
held job; the sweeper releases held jobs once there is room (a cap raised); a release whose send
fails is left to the outbox.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from jobs_client.models import Limits as LimitsView

from chalicelib import errors, tenants
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from local import cli
from tests.conftest import put_tenants

CAP = 2
ROOM = 2 * CAP  # holds.room: running and queued up to twice the cap


def _use(settings, s3, bucket, *, cap: int) -> Runtime:
    document = tenants.document({"acme": ("small", ["key-a"], Limits(100, cap, 3600))})
    runtime = Runtime(replace(settings, tenants_url=put_tenants(s3, bucket, document)))
    runtime_module.use(runtime)
    return runtime


@pytest.fixture
def capped(settings, s3, bucket, rt) -> Runtime:
    """acme (key-a) may run CAP jobs at once."""
    return _use(settings, s3, bucket, cap=CAP)


def _rows(mysql, ids) -> dict[str, dict]:
    with mysql.cursor() as cur:
        cur.execute(
            f"SELECT id, status, held, sent, attempts, message FROM jobs WHERE id IN ({', '.join(['%s'] * len(ids))})",
            tuple(ids),
        )
        return {row["id"]: row for row in cur.fetchall()}


def _queued(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _submit(api, count: int) -> list[str]:
    return [api.submit("sleep", {"steps": 1}).json["jobId"] for _ in range(count)]


def test_a_backlog_beyond_the_cap_waits_held_unsent_and_saying_why(capped, api, mysql, sqs, settings):
    ids = _submit(api, ROOM + 2)

    rows = _rows(mysql, ids)
    assert [rows[i]["held"] for i in ids] == [0] * ROOM + [1, 1]
    assert _queued(sqs, settings.jobs_queue_url) == ROOM  # no message for a held job
    view = api.get(ids[-1]).json
    assert view["status"] == "PENDING" and view["attempts"] == 0
    assert view["message"] == "waiting for a free slot (0 of 2 running, 4 queued: maxRunningJobs of plan small)"
    limits = api.request("GET", "/limits").json
    assert limits["usage"]["heldJobs"] == 2
    assert "(6 pending of which 2 held for a free slot, 0 running)" in cli.limits_text(LimitsView.from_json(limits))


def test_each_end_sends_the_oldest_held_job_until_all_have_run(capped, api, events, mysql, sqs, settings):
    ids = _submit(api, ROOM + 3)

    first = events.receive()
    events.invoke(first[:1])  # one job ends: one held job is released

    rows = _rows(mysql, ids)
    assert [rows[i]["held"] for i in ids[ROOM:]] == [0, 1, 1]  # the oldest first
    assert rows[ids[ROOM]]["sent"] == 1 and rows[ids[ROOM]]["message"] is None
    events.invoke(first[1:])
    events.drain()
    rows = _rows(mysql, ids)
    assert {row["status"] for row in rows.values()} == {"COMPLETED"}
    assert {row["held"] for row in rows.values()} == {0}
    assert all(row["attempts"] == 1 for row in rows.values())


def test_a_cancelled_held_job_frees_nothing_and_a_stray_message_starts_no_held_job(
    capped, api, events, mysql, sqs, settings
):
    ids = _submit(api, ROOM + 2)
    held, still_held = ids[ROOM], ids[ROOM + 1]

    cancelled = api.request("DELETE", f"/jobs/{held}")
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": still_held}))

    assert cancelled.status == 200 and cancelled.json["status"] == "CANCELLED"
    assert _queued(sqs, settings.jobs_queue_url) == ROOM + 1  # the stray one only: nothing released
    stray = [r for r in events.receive() if json.loads(r["Body"])["jobId"] == still_held]
    events.invoke(stray)
    rows = _rows(mysql, [held, still_held])
    assert (rows[held]["status"], rows[held]["held"]) == ("CANCELLED", 0)
    assert (rows[still_held]["status"], rows[still_held]["held"], rows[still_held]["attempts"]) == ("PENDING", 1, 0)


def test_the_sweeper_releases_held_jobs_once_there_is_room(capped, api, mysql, sqs, settings, s3, bucket):
    ids = _submit(api, ROOM + 3)
    raised = _use(settings, s3, bucket, cap=CAP + 1)  # the plan now has room for two more

    report = raised.sweeper.sweep()

    assert report.held_released == 2
    rows = _rows(mysql, ids[ROOM:])
    assert [(rows[i]["held"], rows[i]["sent"]) for i in ids[ROOM:]] == [(0, 1), (0, 1), (1, 1)]
    assert _queued(sqs, settings.jobs_queue_url) == ROOM + 2
    assert raised.sweeper.sweep().held_released == 0  # no room left


def test_a_release_whose_send_fails_is_left_to_the_outbox(capped, api, mysql, monkeypatch):
    ids = _submit(api, ROOM + 1)
    runtime = runtime_module.get()

    def down(*args, **kwargs):
        raise errors.QueueUnavailable("SQS is down")

    monkeypatch.setattr(runtime.queue, "send_job", down)
    assert runtime.holds.release("acme", 1) == []

    row = _rows(mysql, ids[-1:])[ids[-1]]
    assert (row["status"], row["held"], row["sent"]) == ("PENDING", 0, 0)  # the outbox rule sends it
