"""What SQS really delivers, and what the platform makes of it (issue 16, findings 1, 2 and 6):
a crash charges only its own job; the outbox knows what it sent; a hand-off is taken once."""

import json
import threading
import time
import uuid
from dataclasses import replace

import pytest

import app as app_module
from chalicelib import errors
from chalicelib import queue as queue_module
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime
from local import services, worker_process
from local.eventsource import EventSource, LambdaContext
from tests.conftest import wait_until
from tests.support.probe import Probe, SimulatedCrash, logged_steps


@pytest.fixture
def make_queue(sqs):
    """A jobs queue with its dead-letter queue (redrive after `max_receive_count`); both deleted after."""
    made = []

    def make(*, visibility_timeout: int, max_receive_count: int) -> tuple[str, str]:
        name = f"jobs-{uuid.uuid4().hex[:12]}"
        url = services.create_jobs_queue(
            sqs, name, visibility_timeout=visibility_timeout, max_receive_count=max_receive_count
        )
        dlq = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        made.extend([url, dlq])
        return url, dlq

    yield make
    for url in made:
        sqs.delete_queue(QueueUrl=url)


def _use(settings, **changes) -> Runtime:
    runtime = Runtime(replace(settings, **changes))
    runtime_module.use(runtime)
    return runtime


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def _receive(source, count, *, tries=30):
    found = []
    for _ in range(tries):
        found += source.receive(wait_seconds=1)
        if len(found) >= count:
            return found
    pytest.fail(f"{count} messages not received, only {len(found)}")


def _queued(sqs, queue_url) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


class _CountingSqs:
    """The runtime's SQS client, passed through, with the requests it makes kept: operation and arguments."""

    def __init__(self, client):
        self._client, self.requests = client, []

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def counted(*args, **kwargs):
            self.requests.append((name, kwargs))
            return method(*args, **kwargs)

        return counted

    @property
    def calls(self) -> list[str]:
        return [name for name, _ in self.requests]


def _count_requests(runtime: Runtime) -> _CountingSqs:
    counting = _CountingSqs(runtime.queue._sqs)
    runtime.queue._client = counting
    return counting


# --- finding 1: a crash charges only its own job ----------------------------------------------------
def test_a_batch_killed_again_and_again_after_its_first_job_fails_only_the_killer(
    api, settings, sqs, make_queue, tmp_path, mysql
):
    # Given one batch: a short job, then one that SIGKILLs its worker process in chunk 2 every time,
    # then two innocent jobs; a dead-letter queue after 2 receives (worse than AWS's usual 5)
    queue, dlq = make_queue(visibility_timeout=2, max_receive_count=2)
    fast = _use(settings, jobs_queue_url=queue, lease_seconds=1).settings
    first = api.submit("probe", {"tag": "first", "steps": 1}).json["jobId"]
    killer = api.submit("probe", {"tag": "killer", "steps": 3, "killAtStep": 2}).json["jobId"]
    innocents = [api.submit("probe", {"tag": f"innocent-{i}", "steps": 2}).json["jobId"] for i in range(2)]
    dead_letters = EventSource(sqs, dlq, app_module.fail_dead_letters)
    dead_lettered, deaths, after_first_death = [], 0, None

    # When a worker process takes the batch, is killed, and a new one takes what comes back, until all end
    proc = worker_process.start(fast, PROBE_LOG=str(tmp_path))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                deaths += 1
                if after_first_death is None:
                    after_first_death = (_queued(sqs, queue), api.get(first).json["status"])
                proc = worker_process.start(fast, PROBE_LOG=str(tmp_path))
            messages = dead_letters.receive()
            if messages:
                dead_lettered += [json.loads(m["Body"])["jobId"] for m in messages]
                dead_letters.invoke(messages)
            if all(JobStatus(api.get(j).json["status"]).terminal for j in [first, killer, *innocents]):
                break
            time.sleep(0.1)
    finally:
        services.stop(proc, timeout=5)

    # Then the finished job had ended before the first crash, and its message was gone (3 left: the
    # killer's and the two innocents') unless the crash came while its delete was still out (the
    # delete overlaps the next record): then it came back and was dropped, its step never run again.
    # The innocent jobs never reached the dead-letter queue and completed, each chunk once, and only
    # the killer FAILED
    statuses = {job_id: api.get(job_id).json for job_id in [first, killer, *innocents]}
    assert after_first_death in [(3, "COMPLETED"), (4, "COMPLETED")]
    assert deaths >= 2
    assert [statuses[j]["status"] for j in innocents] == ["COMPLETED", "COMPLETED"]
    assert statuses[first]["status"] == "COMPLETED"
    assert statuses[killer]["status"] == "FAILED"
    assert statuses[killer]["error"].startswith(("poison message after 2 receives", "worker died 3 times"))
    assert set(dead_lettered) <= {killer}
    assert [step for _, step in logged_steps(tmp_path, "first")] == [1]
    for i in range(2):
        assert [step for _, step in logged_steps(tmp_path, f"innocent-{i}")] == [1, 2]
    assert _row(mysql, innocents[0])["attempts"] == 1 and _row(mysql, innocents[1])["attempts"] == 1


def _deleted_handles(counting: _CountingSqs) -> list[str]:
    batches = [kw["Entries"] for name, kw in counting.requests if name == "delete_message_batch"]
    return [entry["ReceiptHandle"] for entries in batches for entry in entries]


def test_the_finished_records_but_the_last_are_deleted_by_the_worker_in_one_request(api, rt, events, sqs, settings):
    job_ids = [api.submit("probe", {"tag": f"deleted-{i}", "steps": 1}).json["jobId"] for i in range(3)]
    messages = _receive(events, 3)
    counting = _count_requests(rt)

    failed = events.invoke(messages)

    assert failed == []
    assert [api.get(job_id).json["status"] for job_id in job_ids] == ["COMPLETED"] * 3
    # The first two are deleted together (both ended within the linger); the last is left to
    # Lambda, which deletes it at once.
    assert counting.calls == ["delete_message_batch"]
    assert _deleted_handles(counting) == [m["ReceiptHandle"] for m in messages[:2]]


def test_a_finished_records_delete_goes_out_while_a_long_job_runs_and_the_invocation_waits_for_all(
    api, rt, events, sqs, settings
):
    linger = queue_module.DELETE_LINGER_SECONDS
    short = api.submit("probe", {"tag": "before-long", "steps": 1}).json["jobId"]
    long = api.submit("probe", {"tag": "long", "steps": 2, "stepMs": int(linger * 1000 * 2)}).json["jobId"]
    last = api.submit("probe", {"tag": "after-long", "steps": 1}).json["jobId"]
    order = [short, long, last]
    messages = sorted(_receive(events, 3), key=lambda m: order.index(json.loads(m["Body"])["jobId"]))
    counting = _count_requests(rt)
    answered: list[float] = []
    real_batch = counting.__getattr__("delete_message_batch")

    def slow_batch(**kwargs):
        time.sleep(0.2)  # answered late: the invocation must still wait for it
        answered.append(time.monotonic())
        return real_batch(**kwargs)

    counting.delete_message_batch = slow_batch
    started = time.monotonic()
    failed = events.invoke(messages)
    returned = time.monotonic()

    assert failed == []
    assert [api.get(job_id).json["status"] for job_id in (short, long, last)] == ["COMPLETED"] * 3
    # The short job's delete did not wait for the long job (4 x the linger) to end: it went out
    # after the linger, alone; the long job's went out once the invocation was about to return,
    # and both were answered before it did (none left to a frozen thread).
    assert _deleted_handles(counting) == [m["ReceiptHandle"] for m in messages[:2]]
    assert len(answered) == 2 and all(at <= returned for at in answered)
    assert answered[0] - started < 4 * linger


def test_of_the_records_that_came_back_only_the_first_runs_and_the_others_go_out_fresh(api, rt, events, sqs, settings):
    # Given a batch whose invocation crashed: all three records come back, each with 2 receives
    job_ids = [api.submit("probe", {"tag": f"back-{i}", "steps": 2}).json["jobId"] for i in range(3)]
    first = _receive(events, 3)
    for m in first:
        sqs.change_message_visibility(
            QueueUrl=settings.jobs_queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    again = _receive(events, 3)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in again} == {"2"}
    counting = _count_requests(rt)

    # When the worker takes the batch
    events.invoke(again)

    # Then the first record ran, the two others were sent again as fresh messages (one send each,
    # their deletes in one request), and they run from those with 1 receive
    ran_first = json.loads(again[0]["Body"])["jobId"]
    assert sorted(counting.calls) == ["delete_message_batch", "send_message", "send_message"]
    assert sorted(_deleted_handles(counting)) == sorted(m["ReceiptHandle"] for m in again[1:])
    assert api.get(ran_first).json["status"] == "COMPLETED"
    fresh = _receive(events, 2)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in fresh} == {"1"}
    assert {json.loads(m["Body"])["jobId"] for m in fresh} == set(job_ids) - {ran_first}
    events.invoke(fresh)
    assert [api.get(job_id).json["status"] for job_id in job_ids] == ["COMPLETED"] * 3
    assert all(Probe.started[f"back-{i}"] == [1, 2] for i in range(3))
    assert _queued(sqs, settings.jobs_queue_url) == 0


def _dead_letter(job_id, *, receives=3, **fields):
    body = json.dumps({"jobId": job_id, **fields})
    return {"messageId": uuid.uuid4().hex, "body": body, "attributes": {"ApproximateReceiveCount": str(receives)}}


def test_the_dead_letter_of_a_job_that_never_started_sends_it_again_and_it_completes(api, rt, events, sqs, settings):
    job_id = api.submit("probe", {"tag": "never-started", "steps": 2}).json["jobId"]
    events.receive()  # its message, now invisible: as if it rode along in crashed batches

    assert rt.sweeper.fail_dead_letters([_dead_letter(job_id)]) == {"batchItemFailures": []}

    assert api.get(job_id).json["status"] == "PENDING"
    sent = events.receive()
    assert [json.loads(m["Body"]) for m in sent] == [{"jobId": job_id, "owner": "key-a", "deadLetters": 1}]
    events.invoke(sent)
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_the_dead_letter_of_a_job_that_died_at_the_chunk_it_is_at_fails_it(api, rt, mysql):
    job_id = api.submit("probe", {"tag": "dies", "steps": 3}).json["jobId"]
    with mysql.cursor() as cur:  # taken over once after a death at chunk 1, and not further since
        cur.execute("UPDATE jobs SET status = 'RUNNING', deaths = 1, death_chunk = 1 WHERE id = %s", (job_id,))

    rt.sweeper.fail_dead_letters([_dead_letter(job_id, receives=3)])

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["error"].startswith("poison message after 2 receives")


def test_the_dead_letter_of_a_job_that_moved_on_since_its_last_death_sends_it_again(api, rt, events, mysql):
    job_id = api.submit("probe", {"tag": "moved-on", "steps": 4}).json["jobId"]
    events.receive()
    checkpoint = {"seq": 3, "state": {"done": 2, "sum": 3, "pass": 1}, "progress": [50, None, None], "chunks": 2}
    with mysql.cursor() as cur:  # died at chunk 1 once, then ran chunk 1 and 2 (it is at chunk 3 now)
        cur.execute(
            "UPDATE jobs SET status = 'RUNNING', attempts = 1, deaths = 1, death_chunk = 1, checkpoint = %s,"
            " checkpoint_seq = 3 WHERE id = %s",
            (json.dumps(checkpoint), job_id),
        )

    rt.sweeper.fail_dead_letters([_dead_letter(job_id, lease="a" * 32, hop=2)])

    sent = events.receive()
    assert [json.loads(m["Body"]) for m in sent] == [
        {"jobId": job_id, "owner": "key-a", "lease": "a" * 32, "hop": 2, "deadLetters": 1}
    ]
    events.invoke(sent)
    assert api.get(job_id).json["status"] == "COMPLETED"
    assert Probe.started["moved-on"] == [3, 4]


def test_a_job_sent_again_from_the_dead_letter_queue_max_deaths_times_fails(api, rt, events):
    job_id = api.submit("probe", {"tag": "bounded", "steps": 2}).json["jobId"]
    events.receive()

    rt.sweeper.fail_dead_letters([_dead_letter(job_id, deadLetters=rt.settings.max_deaths)])

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["error"].startswith("poison message")
    assert events.receive() == []


# --- finding 2: the outbox knows what it sent ------------------------------------------------------
def test_a_backlog_of_500_jobs_with_the_sweeper_every_second_is_sent_once(api, settings, sqs, mysql):
    # Given 500 jobs queued behind each other (no worker takes any), and one whose send failed
    runtime = _use(settings, pending_resend_seconds=0)
    for _ in range(500):
        runtime.service.submit("key-a", {"type": "sleep", "payload": {"steps": 1}})
    down = _use(settings, jobs_queue_url=settings.jobs_queue_url + "-gone")
    unsent = down.service.submit("key-a", {"type": "sleep", "payload": {"steps": 1}}).job.id
    assert _row(mysql, unsent)["sent"] == 0
    runtime = _use(settings, pending_resend_seconds=0)

    # When the sweeper runs every second for three seconds
    reports = []
    for _ in range(3):
        reports.append(runtime.sweeper.sweep())
        time.sleep(1)

    # Then only the unsent job was sent, once: 501 messages for 501 jobs
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    received = []
    while batch := source.receive():
        received += [json.loads(m["Body"])["jobId"] for m in batch]
    assert [(r.pending_sent, r.lost_sent) for r in reports] == [(1, 0), (0, 0), (0, 0)]
    assert len(received) == 501 and len(set(received)) == 501 and unsent in received
    assert _row(mysql, unsent)["sent"] == 1


def test_a_pending_job_whose_message_went_out_is_sent_again_only_after_pending_lost_seconds(
    api, settings, events, mysql
):
    job_id = api.submit("probe", {"tag": "lost", "steps": 1}).json["jobId"]
    events.receive()  # then the message is lost: deleted without running
    runtime = _use(settings, pending_resend_seconds=0)
    assert runtime.sweeper.sweep().lost_sent == 0  # queued behind a backlog, for all the sweeper knows
    with mysql.cursor() as cur:
        cur.execute("UPDATE jobs SET updated_at = NOW(3) - INTERVAL 7 HOUR WHERE id = %s", (job_id,))

    report = runtime.sweeper.sweep()

    assert (report.pending_sent, report.lost_sent) == (0, 1)
    assert runtime.sweeper.sweep().lost_sent == 0  # the re-send counts as a send: hours again


# --- finding 6: one hand-off, one runner -----------------------------------------------------------
def test_a_continuation_delivered_twice_at_once_runs_each_chunk_once(api, settings, sqs, mysql):
    _use(settings, handoff_reserve_ms=100)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    job_id = api.submit("probe", {"tag": "cont-twice", "steps": 12, "stepMs": 40}).json["jobId"]
    source.invoke(source.receive(), LambdaContext(timeout_seconds=0.35))  # a few chunks, then a hand-off
    continuation = _receive(source, 1)[0]
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=continuation["Body"])  # a duplicate
    copies = [continuation, _receive(source, 1)[0]]
    assert json.loads(copies[0]["Body"]) == json.loads(copies[1]["Body"]) and "hop" in copies[0]["Body"]

    both = [threading.Thread(target=source.invoke, args=([m],)) for m in copies]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(30)

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["result"]["sum"] == 78
    assert Probe.started["cont-twice"] == list(range(1, 13))
    assert _row(mysql, job_id)["deaths"] == 0
    assert _queued(sqs, settings.jobs_queue_url) == 0


def test_a_continuation_whose_taker_died_is_taken_over_and_the_death_counted(api, settings, sqs, mysql):
    _use(settings, handoff_reserve_ms=100, lease_seconds=1)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    job_id = api.submit("probe", {"tag": "cont-died", "steps": 6, "stepMs": 60, "crashAtStep": 5}).json["jobId"]
    source.invoke(source.receive(), LambdaContext(timeout_seconds=0.35))  # chunks 1-3 or so, a hand-off
    continuation = _receive(source, 1)[0]
    with pytest.raises(SimulatedCrash):  # its taker dies in chunk 5, holding the hand-off's lease
        source.invoke([continuation])
    sqs.change_message_visibility(
        QueueUrl=settings.jobs_queue_url, ReceiptHandle=continuation["ReceiptHandle"], VisibilityTimeout=0
    )
    time.sleep(1.1)  # the dead taker's lease expires

    source.invoke(_receive(source, 1))

    job, row = api.get(job_id).json, _row(mysql, job_id)
    assert job["status"] == "COMPLETED" and job["result"]["sum"] == 21
    assert (row["deaths"], row["death_chunk"]) == (1, 5)  # a take-over, not an inheritance: the death counts
    assert Probe.started["cont-died"].count(5) == 2 and sorted(set(Probe.started["cont-died"])) == list(range(1, 7))


def test_a_late_copy_of_a_hand_off_whose_taker_handed_on_is_dropped_without_a_death(api, settings, sqs, mysql):
    # Given a job handed off twice: its first continuation was taken, and handed on in turn
    _use(settings, handoff_reserve_ms=100, lease_seconds=1)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    job_id = api.submit("probe", {"tag": "late-copy", "steps": 12, "stepMs": 40}).json["jobId"]
    source.invoke(source.receive(), LambdaContext(timeout_seconds=0.35))
    first_hop = _receive(source, 1)[0]
    source.invoke([first_hop], LambdaContext(timeout_seconds=0.35))
    started = list(Probe.started["late-copy"])
    time.sleep(1.1)  # the lease lapses while the second continuation waits in the queue

    # When a copy of the first continuation arrives late, before the second is taken
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=first_hop["Body"])
    late, second = sorted(_receive(source, 2), key=lambda m: m["Body"] != first_hop["Body"])
    source.invoke([late])
    after_copy = list(Probe.started["late-copy"])
    source.invoke([second])

    # Then the copy ran nothing and counted no death; the second continuation finished the job
    job, row = api.get(job_id).json, _row(mysql, job_id)
    assert json.loads(late["Body"])["hop"] == 1 and json.loads(second["Body"])["hop"] == 2
    assert after_copy == started
    assert job["status"] == "COMPLETED" and Probe.started["late-copy"] == list(range(1, 13))
    assert row["deaths"] == 0


def test_the_sweeper_leaves_a_running_job_whose_hand_off_waits_in_the_queue(api, settings, sqs, redis_client):
    # Given a job whose continuation waits behind a backlog longer than its lease and STALL_AFTER_SECONDS
    runtime = _use(settings, handoff_reserve_ms=100, lease_seconds=1, stall_after_seconds=0)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    job_id = api.submit("probe", {"tag": "queued-hand-off", "steps": 12, "stepMs": 40}).json["jobId"]
    source.invoke(source.receive(), LambdaContext(timeout_seconds=0.35))
    wait_until(lambda: not redis_client.exists(runtime.hot.lease_key(job_id)), timeout=3)

    # When the sweeper looks twice, a lease period apart
    first = runtime.sweeper.sweep().stalled_sent
    time.sleep(1.1)
    second = runtime.sweeper.sweep().stalled_sent

    # Then it sends nothing: the hand-off is in the queue, as the one message there says
    assert (first, second) == (0, 0)
    assert _queued(sqs, settings.jobs_queue_url) == 1
    # ...until the hand-off is older than PENDING_LOST_SECONDS: then it must have been lost
    lost = _use(settings, lease_seconds=1, stall_after_seconds=0, pending_lost_seconds=0)
    lost.sweeper.sweep()
    time.sleep(1.1)
    assert lost.sweeper.sweep().stalled_sent == 1


def test_a_fresh_duplicate_while_the_hand_off_waits_in_the_queue_is_dropped_without_a_death(api, settings, sqs, mysql):
    # Given a job whose continuation waits in the queue longer than its lease
    _use(settings, handoff_reserve_ms=100, lease_seconds=1)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs)
    job_id = api.submit("probe", {"tag": "fresh-dup", "steps": 12, "stepMs": 40}).json["jobId"]
    source.invoke(source.receive(), LambdaContext(timeout_seconds=0.35))
    hand_off = _receive(source, 1)[0]
    started = list(Probe.started["fresh-dup"])
    time.sleep(1.1)

    # When a fresh message for the job (a duplicate delivery, a re-send) comes first
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": job_id}))
    source.invoke(_receive(source, 1))
    after_duplicate = list(Probe.started["fresh-dup"])
    source.invoke([hand_off])

    # Then it took nothing over: the hand-off carried the job on, each chunk once, no death counted
    job, row = api.get(job_id).json, _row(mysql, job_id)
    assert after_duplicate == started
    assert job["status"] == "COMPLETED" and Probe.started["fresh-dup"] == list(range(1, 13))
    assert row["deaths"] == 0


def test_ten_deletes_go_out_at_once_and_a_refused_one_is_told_apart(rt, sqs, settings, monkeypatch):
    # Given ten received messages, and deletes that would linger a minute for others to join them
    monkeypatch.setattr(queue_module, "DELETE_LINGER_SECONDS", 60)
    url = settings.jobs_queue_url
    for i in range(10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"jobId": f"d-{i}"}))
    received = []
    while len(received) < 10:
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    counting = _count_requests(rt)
    handles = [m["ReceiptHandle"] for m in received]

    # When the worker's queue deletes them, then one whose receipt handle SQS does not know
    started = time.monotonic()
    ten = [rt.queue.delete_soon(handle, queue_arn=arn) for handle in handles]
    for done in ten:
        done.result(timeout=20)
    waited = time.monotonic() - started
    unknown = rt.queue.delete_soon("not-a-receipt-handle", queue_arn=arn)
    rt.queue.flush_deletes()

    # Then the ten went out together without waiting out the linger, and the unknown one alone
    # after the flush, refused with SQS's reason
    with pytest.raises(errors.QueueUnavailable, match="ReceiptHandleIsInvalid"):
        unknown.result(timeout=20)
    assert counting.calls == ["delete_message_batch", "delete_message_batch"]
    assert _deleted_handles(counting) == [*handles, "not-a-receipt-handle"]
    assert waited < 20
    assert _queued(sqs, url) == 0
