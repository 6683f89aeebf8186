"""Priorities: a high job's every message goes to the high-priority queue, a normal job's to the jobs queue.

Each test has both queues of its own (the high one with a dead-letter queue, redrive after two
receives); the queues are read through moto, as SQS would give them to the event source mappings.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
import redis

import app as app_module
from chalicelib import runtime as runtime_module
from chalicelib import tenants
from chalicelib.models import utcnow
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from local import services
from local.eventsource import EventSource, LambdaContext
from tests.conftest import put_tenants, wait_until
from tests.support.probe import Probe


@pytest.fixture
def settings(settings, sqs, run_id):
    """The test's settings with a high-priority queue (and its dead-letter queue) of its own."""
    name = f"jobs-high-{run_id}-{uuid.uuid4().hex[:8]}"
    url = services.create_jobs_queue(sqs, name, max_receive_count=2)
    dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
    yield replace(settings, jobs_high_queue_url=url, jobs_high_queue_name=name, jobs_high_dlq_name=f"{name}-dlq")
    for queue_url in (url, dlq_url):
        sqs.delete_queue(QueueUrl=queue_url)


@pytest.fixture
def high_events(rt, sqs, settings) -> EventSource:
    """The event source of the high-priority worker function, fed from the test's high queue."""
    return EventSource(sqs, settings.jobs_high_queue_url, app_module.run_high_jobs)


def _use(settings, **changes) -> Runtime:
    runtime = Runtime(replace(settings, **changes))
    runtime_module.use(runtime)
    return runtime


def _bodies(source: EventSource, *, wait_seconds: int = 0) -> list[dict]:
    """The bodies of the messages visible on the source's queue now, made visible again at once (a peek)."""
    messages = source.receive(wait_seconds=wait_seconds)
    if messages:
        source._sqs.change_message_visibility_batch(
            QueueUrl=source.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages)
            ],
        )
    return [json.loads(m["Body"]) for m in messages]


def _row(mysql, job_id: str) -> dict:
    with mysql.cursor() as cur:
        cur.execute("SELECT status, priority, attempts, error FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


# --- the submission -----------------------------------------------------------------------------
@pytest.mark.parametrize("priority", ["urgent", "HIGH", "", 1, True, None, ["high"]])
def test_a_priority_other_than_high_or_normal_is_a_400_and_nothing_is_stored_or_sent(
    priority, api, mysql, events, high_events
):
    reply = api.submit("sleep", {"steps": 1}, priority=priority)

    assert reply.status == 400
    assert reply.json == {"code": "InvalidRequest", "message": 'priority must be "high" or "normal"'}
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 0
    assert _bodies(events) == [] and _bodies(high_events) == []


def test_a_high_jobs_message_is_on_the_high_queue_and_a_normal_ones_on_the_jobs_queue(api, mysql, events, high_events):
    high = api.submit("sleep", {"steps": 1}, priority="high")
    normal = api.submit("sleep", {"steps": 1}, priority="normal")

    assert (high.status, high.json["priority"]) == (202, "high")
    assert (normal.status, normal.json["priority"]) == (202, "normal")
    [on_high] = _bodies(high_events)
    [on_normal] = _bodies(events)
    assert (on_high["jobId"], on_high["priority"]) == (high.json["jobId"], "high")
    assert on_normal["jobId"] == normal.json["jobId"] and "priority" not in on_normal  # normal: the default
    assert _row(mysql, high.json["jobId"])["priority"] == "high"
    assert _row(mysql, normal.json["jobId"])["priority"] == "normal"


def test_a_high_job_runs_through_the_high_priority_worker_function(api, high_events, events):
    job_id = api.submit("sleep", {"steps": 3, "stepMs": 1}, priority="high").json["jobId"]

    assert high_events.drain() == 1

    job = api.get(job_id).json
    assert (job["status"], job["priority"], job["result"]) == ("COMPLETED", "high", {"steps": 3, "sleptMs": 3})
    assert _bodies(events) == []  # nothing went to the jobs queue on the way


def test_priority_is_normal_by_default_in_every_view_and_after_a_redis_flush(api, settings, events):
    normal = api.submit("sleep", {"steps": 1}).json["jobId"]
    high = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    expected = {normal: "normal", high: "high"}

    def priorities(path: str) -> dict[str, str]:
        return {job["jobId"]: job["priority"] for job in api.request("GET", path).json["jobs"]}

    assert {job_id: api.get(job_id).json["priority"] for job_id in expected} == expected  # hot views
    assert priorities("/jobs") == expected
    assert priorities(f"/jobs?ids={normal},{high}") == expected
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(*client.scan_iter(match=settings.redis_prefix + "*"))  # Redis lost everything: MySQL answers
    assert {job_id: api.get(job_id).json["priority"] for job_id in expected} == expected
    assert priorities(f"/jobs?ids={normal},{high}") == expected
    assert priorities("/jobs") == expected


def test_the_same_idempotency_key_with_another_priority_is_a_409(api):
    key = {"Idempotency-Key": f"prio-{uuid.uuid4().hex}"}
    first = api.submit("sleep", {"steps": 1}, headers=key)
    assert api.submit("sleep", {"steps": 1}, headers=key, priority="normal").status == 202  # the same request
    reply = api.submit("sleep", {"steps": 1}, headers=key, priority="high")

    assert (reply.status, reply.json["code"]) == (409, "IdempotencyKeyReused")
    assert reply.json["jobId"] == first.json["jobId"]


# --- the worker keeps the job on its queue ------------------------------------------------------
def test_hand_offs_past_the_time_limit_go_to_the_high_queue(api, sqs, settings, events, mysql):
    _use(settings, handoff_reserve_ms=100)
    job_id = api.submit("probe", {"tag": "high-handed", "steps": 20, "stepMs": 30}, priority="high").json["jobId"]
    short = EventSource(sqs, settings.jobs_high_queue_url, app_module.run_high_jobs, function_timeout=0.35)

    short.poll_once()

    [continuation] = _bodies(short)
    assert (continuation["jobId"], continuation["priority"]) == (job_id, "high")
    assert continuation["lease"] and continuation["job"]["status"] == "RUNNING"
    assert _bodies(events) == []
    handled = short.drain()
    assert handled >= 2  # the first continuation, then one per further hand-off
    assert Probe.started["high-handed"] == list(range(1, 21))
    assert _row(mysql, job_id)["status"] == "COMPLETED"
    assert _bodies(events) == []


def test_a_retry_after_a_failed_step_goes_to_the_high_queue(api, settings, events, high_events, mysql):
    _use(settings, retry_base_seconds=1)
    payload = {"tag": "high-retry", "steps": 2, "failAtStep": 1, "failTimes": 1}
    job_id = api.submit("probe", payload, priority="high", maxAttempts=3).json["jobId"]

    high_events.poll_once()

    [retry] = wait_until(lambda: _bodies(high_events, wait_seconds=1), timeout=10)  # after its backoff
    assert (retry["jobId"], retry["priority"]) == (job_id, "high") and retry["lease"]
    assert _bodies(events) == []
    assert high_events.drain() == 1
    assert (_row(mysql, job_id)["status"], _row(mysql, job_id)["attempts"]) == ("COMPLETED", 2)


def test_a_retried_high_job_goes_to_the_high_queue(api, events, high_events, mysql):
    payload = {"tag": "high-rerun", "steps": 2, "failAtStep": 2, "failTimes": 1}
    job_id = api.submit("probe", payload, priority="high", maxAttempts=1).json["jobId"]
    high_events.drain()
    assert _row(mysql, job_id)["status"] == "FAILED"

    assert api.request("POST", f"/jobs/{job_id}/retry").status == 202

    [sent] = _bodies(high_events, wait_seconds=1)
    assert (sent["jobId"], sent["priority"]) == (job_id, "high")
    assert _bodies(events) == []


def test_a_deferral_for_want_of_a_slot_goes_to_the_high_queue(api, settings, events, high_events):
    _use(settings, defer_max_seconds=1)
    holder = api.submit("solo", {"tag": "solo-holder", "steps": 1, "gateAtStep": 1}).json["jobId"]
    waiting = api.submit("solo", {"tag": "solo-high", "steps": 1}, priority="high").json["jobId"]
    running = threading.Thread(target=events.poll_once, daemon=True)
    running.start()
    wait_until(lambda: Probe.started.get("solo-holder"))

    high_events.poll_once()  # the type's one slot is taken: deferred

    assert api.get(waiting).json["message"] == "waiting for a free slot (1 of 1 running: max_concurrency of type solo)"
    Probe.gates["solo-holder"].set()
    running.join(10)
    [deferred] = wait_until(lambda: _bodies(high_events, wait_seconds=1), timeout=10)
    assert deferred == {"jobId": waiting, "owner": "key-a", "deferrals": 1, "priority": "high"}
    assert _bodies(events) == []
    assert high_events.drain() == 1
    assert [api.get(job_id).json["status"] for job_id in (holder, waiting)] == ["COMPLETED", "COMPLETED"]


def test_a_record_with_no_time_left_is_sent_again_to_the_high_queue(api, high_events, events, mysql):
    job_id = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    [message] = high_events.receive()

    failed = high_events.invoke([message], LambdaContext(timeout_seconds=0))

    assert failed == []  # not failed: sent again, so the time limit never counts toward the DLQ
    [again] = _bodies(high_events)
    assert (again["jobId"], again["priority"]) == (job_id, "high")
    assert _bodies(events) == []
    assert _row(mysql, job_id)["status"] == "PENDING"


# --- the sweeper and the dead-letter handler ----------------------------------------------------
def test_the_sweepers_resend_of_a_lost_high_job_goes_to_the_high_queue(api, settings, events, high_events):
    rt = _use(settings, pending_lost_seconds=1)
    job_id = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    [lost] = high_events.receive()
    high_events._sqs.delete_message(QueueUrl=settings.jobs_high_queue_url, ReceiptHandle=lost["ReceiptHandle"])
    rt.store.touch([job_id], status=rt.store.get_job(job_id).status, at=utcnow() - timedelta(seconds=5))

    report = rt.sweeper.sweep()

    assert report.lost_sent == 1
    [again] = _bodies(high_events)
    assert (again["jobId"], again["priority"]) == (job_id, "high")
    assert _bodies(events) == []


def test_the_sweepers_outbox_sends_a_high_job_whose_send_failed_to_the_high_queue(
    api, settings, events, high_events, monkeypatch
):
    rt = _use(settings, pending_resend_seconds=0)
    monkeypatch.setattr(rt.queue, "high_url", f"{settings.jobs_high_queue_url}-missing")  # SQS refuses the send
    job_id = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    monkeypatch.undo()

    assert rt.sweeper.sweep().pending_sent == 1

    [sent] = _bodies(high_events)
    assert (sent["jobId"], sent["priority"]) == (job_id, "high")
    assert _bodies(events) == []


@pytest.fixture
def high_dead_letters(rt, sqs, settings) -> EventSource:
    """The high-priority dead-letter queue feeding its handler, as its event source mapping does."""
    url = sqs.get_queue_url(QueueName=settings.jobs_high_dlq_name)["QueueUrl"]
    return EventSource(sqs, url, app_module.fail_high_dead_letters)


def _dead_letter(sqs, settings, body: dict) -> None:
    url = sqs.get_queue_url(QueueName=settings.jobs_high_dlq_name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


def test_the_high_dead_letter_handler_sends_an_innocent_high_job_again_to_the_high_queue(
    api, sqs, settings, events, high_events, high_dead_letters, mysql
):
    job_id = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    [first] = high_events.receive()
    _dead_letter(sqs, settings, json.loads(first["Body"]))  # as SQS's redrive moves it

    assert high_dead_letters.poll_once() == 1

    [again] = _bodies(high_events)  # the first message is still in flight (it was received)
    assert (again["jobId"], again["priority"], again["deadLetters"]) == (job_id, "high", 1)
    assert _bodies(events) == []
    assert _row(mysql, job_id)["status"] == "PENDING"


def test_the_high_dead_letter_handler_fails_a_job_dead_lettered_too_often(
    api, sqs, settings, high_events, high_dead_letters, mysql
):
    job_id = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    _dead_letter(sqs, settings, {"jobId": job_id, "owner": "key-a", "priority": "high", "deadLetters": 3})

    high_dead_letters.poll_once()

    row = _row(mysql, job_id)
    assert (row["status"], row["priority"]) == ("FAILED", "high")
    assert row["error"].startswith("poison message after")
    assert api.get(job_id).json["status"] == "FAILED"


def test_a_held_high_job_is_released_to_the_high_queue_when_a_slot_frees(
    api, settings, s3, bucket, events, high_events, mysql
):
    document = tenants.document({"acme": ("small", ["key-a"], Limits(100, 1, 3600))})  # room: 2 queued or running
    _use(settings, tenants_url=put_tenants(s3, bucket, document))
    first, second = (api.submit("sleep", {"steps": 1}).json["jobId"] for _ in range(2))
    held = api.submit("sleep", {"steps": 1}, priority="high").json["jobId"]
    assert _bodies(high_events) == []  # held in MySQL: no message yet

    events.poll_once()  # the two normal jobs end; the first end releases the held one

    assert {_row(mysql, job_id)["status"] for job_id in (first, second)} == {"COMPLETED"}
    [released] = _bodies(high_events)
    assert (released["jobId"], released["priority"]) == (held, "high")
    assert _bodies(events) == []
    assert high_events.drain() == 1 and _row(mysql, held)["status"] == "COMPLETED"


# --- batches and dependencies -------------------------------------------------------------------
def test_a_batchs_members_go_each_to_its_own_queue(api, mysql, events, high_events):
    members = [
        {"type": "sleep", "payload": {"steps": 1}, **({"priority": "high"} if i % 3 == 0 else {})} for i in range(12)
    ]
    reply = api.request("POST", "/batches", body={"jobs": members, "then": {"type": "sleep", "priority": "high"}})

    assert reply.status == 202
    ids = reply.json["jobIds"]
    expected_high = {job_id for i, job_id in enumerate(ids) if i % 3 == 0}
    high_bodies, normal_bodies = [], []
    for source, found in ((high_events, high_bodies), (events, normal_bodies)):
        while batch := source.receive():  # received, so the next receive gets the rest
            found += [json.loads(m["Body"]) for m in batch]
    assert {b["jobId"] for b in high_bodies} == expected_high and {b["priority"] for b in high_bodies} == {"high"}
    assert {b["jobId"] for b in normal_bodies} == set(ids) - expected_high
    assert [api.get(job_id).json["priority"] for job_id in ids] == [
        "high" if job_id in expected_high else "normal" for job_id in ids
    ]
    assert api.get(reply.json["thenJobId"]).json["priority"] == "high"


def test_a_high_dependant_is_released_to_the_high_queue(api, events, high_events, mysql):
    first = api.submit("sleep", {"steps": 1}).json["jobId"]
    waiter = api.submit("sleep", {"steps": 1}, dependsOn=[first], priority="high").json
    assert (waiter["status"], waiter["priority"]) == ("WAITING", "high")

    events.drain()  # the dependency completes: its final write releases the waiter

    [released] = _bodies(high_events)
    assert (released["jobId"], released["priority"]) == (waiter["jobId"], "high")
    assert _bodies(events) == []
    high_events.drain()
    assert _row(mysql, waiter["jobId"])["status"] == "COMPLETED"
