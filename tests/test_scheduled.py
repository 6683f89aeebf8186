"""Scheduled jobs: `runAt` or `delaySeconds` on POST /jobs.

Given the API, the worker and the sweeper over real MariaDB, Redis and moto's SQS (which honours
DelaySeconds), when a job is submitted for later, then it reads SCHEDULED with its runAt, its
message goes out with SQS's delay when it is due within 15 minutes (else the sweeper sends it,
with the delay left, once it is), it starts no earlier than runAt and soon after it, a message that
comes early starts nothing, a DELETE cancels it at once and its queued message then runs nothing,
and bad times are 400s naming the rule.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib import sweeper as sweeper_module
from chalicelib.models import isoformat
from tests.conftest import wait_until


def _row(mysql, job_id) -> dict:
    with mysql.cursor() as cur:
        cur.execute("SELECT status, sent, run_at, started_at, attempts FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def _sends(monkeypatch, rt) -> list[tuple[str, int]]:
    """Every send of the runtime's queue, as (job id, delay seconds)."""
    sent, send = [], rt.queue.send_job

    def recording(job_id, **kwargs):
        sent.append((job_id, kwargs.get("delay_seconds", 0)))
        return send(job_id, **kwargs)

    monkeypatch.setattr(rt.queue, "send_job", recording)
    return sent


def test_a_job_for_three_seconds_ahead_starts_no_earlier_and_soon_after(api, events, mysql, rt):
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)

    reply = api.submit("sleep", {"steps": 1}, runAt=run_at.isoformat())

    assert reply.status == 202 and reply.json["status"] == "SCHEDULED"
    assert reply.json["runAt"] == isoformat(run_at)
    assert reply.headers["retry-after"] in ("2", "3")  # poll when it is due, not before
    job_id = reply.json["jobId"]
    assert api.get(job_id).json["status"] == "SCHEDULED"
    assert events.receive() == []  # delayed in SQS
    [record] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
    events.invoke([record])
    row = _row(mysql, job_id)
    assert row["status"] == "COMPLETED"
    late = (row["started_at"].replace(tzinfo=UTC) - run_at).total_seconds()
    assert 0 <= late < 2.5  # moto's long poll answers within a second of the delay's end


def test_a_job_due_past_sqs_delay_is_sent_by_the_sweeper_with_the_delay_left(api, mysql, rt, monkeypatch):
    sent = _sends(monkeypatch, rt)
    reply = api.submit("sleep", {"steps": 1}, delaySeconds=3600)
    job_id = reply.json["jobId"]
    assert sent == [] and _row(mysql, job_id)["sent"] == 0  # waits in MySQL
    assert reply.headers["retry-after"] == "30"  # the longest advice

    assert rt.sweeper.sweep().scheduled_sent == 0  # due in an hour: not yet
    later = datetime.now(UTC) + timedelta(seconds=3600 - 600)  # ten minutes before runAt
    monkeypatch.setattr(sweeper_module, "utcnow", lambda: later)
    report = rt.sweeper.sweep()

    assert report.scheduled_sent == 1
    [(sent_id, delay)] = sent
    assert sent_id == job_id and 598 <= delay <= 601
    assert _row(mysql, job_id)["sent"] == 1
    assert rt.sweeper.sweep().scheduled_sent == 0  # sent once


def test_a_message_that_comes_early_starts_nothing_and_is_sent_again_for_then(api, events, mysql, rt, sqs, settings):
    job_id = api.submit("sleep", {"steps": 1}, delaySeconds=600).json["jobId"]
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": job_id}))  # a stray one

    events.invoke(events.receive())

    row = _row(mysql, job_id)
    assert (row["status"], row["attempts"]) == ("SCHEDULED", 0)
    attributes = sqs.get_queue_attributes(
        QueueUrl=settings.jobs_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "2"  # the submit's and the re-send


def test_delete_cancels_a_scheduled_job_at_once_and_its_queued_message_runs_nothing(api, events, mysql):
    job_id = api.submit("sleep", {"steps": 1}, delaySeconds=1).json["jobId"]

    cancelled = api.request("DELETE", f"/jobs/{job_id}")

    assert cancelled.status == 200 and cancelled.json["status"] == "CANCELLED"
    time.sleep(1.2)
    [record] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
    events.invoke([record])
    row = _row(mysql, job_id)
    assert (row["status"], row["attempts"], row["started_at"]) == ("CANCELLED", 0, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runAt": "2020-01-01T00:00:00Z"}, "runAt must be in the future"),
        ({"runAt": "2099-01-01T00:00:00Z"}, "runAt must be at most a year ahead"),
        ({"runAt": "2026-12-24T18:00:00"}, "runAt must be an RFC 3339 date-time with an offset"),
        ({"runAt": "tomorrow"}, "runAt must be an RFC 3339 date-time with an offset"),
        ({"runAt": 1767000000}, "runAt must be an RFC 3339 date-time with an offset"),
        ({"delaySeconds": -1}, "delaySeconds must be an integer from 0 to 31536000"),
        ({"delaySeconds": 31_536_001}, "delaySeconds must be an integer from 0 to 31536000"),
        ({"delaySeconds": "60"}, "delaySeconds must be an integer from 0 to 31536000"),
        ({"delaySeconds": 60, "runAt": "2099-01-01T00:00:00Z"}, "give runAt or delaySeconds, not both"),
    ],
)
def test_bad_times_are_400s_naming_the_rule(api, mysql, options, message):
    reply = api.submit("sleep", {"steps": 1}, **options)

    assert reply.status == 400 and reply.json["code"] == "InvalidRequest"
    assert reply.json["message"].startswith(message)
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 0


def test_delay_zero_is_at_once_and_a_retry_with_the_same_key_is_the_same_request(api):
    now = api.submit("sleep", {"steps": 1}, delaySeconds=0)
    first = api.submit("sleep", {"steps": 1}, headers={"Idempotency-Key": "k1"}, delaySeconds=120)
    time.sleep(0.01)
    again = api.submit("sleep", {"steps": 1}, headers={"Idempotency-Key": "k1"}, delaySeconds=120)

    assert now.json["status"] == "PENDING" and now.json["runAt"] is None
    assert again.status == 202 and again.json["jobId"] == first.json["jobId"]
    assert again.headers["idempotent-replayed"] == "true" and again.json["runAt"] == first.json["runAt"]
