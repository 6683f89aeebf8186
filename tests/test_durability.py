"""Durable execution as AWS really behaves: killed workers, duplicate deliveries, a Redis that loses
its data, time limits, failing steps, poison messages, an SQS outage at submit, partial batches."""

import json
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import replace

import pytest

import app as app_module
from chalicelib import runtime as runtime_module
from chalicelib.hotstate import connect as redis_connect
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime
from local import services, worker_process
from local.eventsource import EventSource, LambdaContext
from tests.conftest import poll_until_finished, wait_until
from tests.support.probe import Probe, SimulatedCrash, logged_steps


@pytest.fixture
def make_queue(sqs, settings):
    """Queues with the visibility timeout (and dead-letter redrive) a test needs; deleted after it."""
    made = []

    def make(*, visibility_timeout: int, max_receive_count: int | None = None) -> str:
        name = f"jobs-{uuid.uuid4().hex[:12]}"
        url = services.create_jobs_queue(
            sqs, name, visibility_timeout=visibility_timeout, max_receive_count=max_receive_count
        )
        made.append(url)
        if max_receive_count is not None:
            made.append(sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"])
        return url

    yield make
    for url in made:
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def workers():
    """Start worker processes that know the probe job type (recording its chunks under `probe_log`);
    every one still alive is killed after the test."""
    started = []

    def start(settings, *, probe_log, **options):
        proc = worker_process.start(settings, PROBE_LOG=str(probe_log), **options)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        services.stop(proc, timeout=5)


def _use(settings, **changes) -> Runtime:
    runtime = Runtime(replace(settings, **changes))
    runtime_module.use(runtime)
    return runtime


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def _finished(api, job_id, *, timeout=30.0):
    return wait_until(
        lambda: JobStatus((job := api.get(job_id).json)["status"]).terminal and job, timeout=timeout, interval=0.05
    )


def _expected(steps: int) -> dict:
    return {"done": steps, "sum": steps * (steps + 1) // 2}


# --- (a) a worker process killed mid-job ---------------------------------------------------------
def test_a_killed_worker_process_is_taken_over_from_its_checkpoint_redoing_at_most_one_chunk(
    api, settings, make_queue, workers, tmp_path, mysql
):
    # The lease (1 s) expires before the message comes back (visibility timeout 3 s), as
    # LEASE_SECONDS <= visibility timeout - function timeout guarantees on AWS.
    fast = replace(settings, jobs_queue_url=make_queue(visibility_timeout=3), lease_seconds=1)
    runtime_module.use(Runtime(fast))
    first, second = workers(fast, probe_log=tmp_path), workers(fast, probe_log=tmp_path)
    job_id = api.submit("probe", {"tag": "killed", "steps": 20, "stepMs": 100}).json["jobId"]

    chunks = wait_until(lambda: len(logged_steps(tmp_path, "killed")) >= 4 and logged_steps(tmp_path, "killed"))
    holder = chunks[-1][0]
    os.kill(holder, signal.SIGKILL)
    job = _finished(api, job_id)

    steps = [step for _, step in logged_steps(tmp_path, "killed")]
    pids = {pid for pid, _ in logged_steps(tmp_path, "killed")}
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(20)
    assert pids == {first.pid, second.pid}  # the survivor finished it
    assert sorted(set(steps)) == list(range(1, 21))
    assert len(steps) - 20 <= 1  # at most the chunk that was running when the process died
    assert _row(mysql, job_id)["lease_token"] is not None


def test_a_job_that_kills_its_worker_at_the_same_chunk_every_time_fails_after_max_deaths(
    api, settings, make_queue, workers, tmp_path, mysql
):
    # Given a job whose chunk 2 kills the process running it (an out-of-memory stand-in), every time
    fast = replace(settings, jobs_queue_url=make_queue(visibility_timeout=2), lease_seconds=1, max_deaths=3)
    runtime_module.use(Runtime(fast))
    procs = [workers(fast, probe_log=tmp_path) for _ in range(4)]
    started = time.monotonic()
    job_id = api.submit("probe", {"tag": "oom", "steps": 4, "killAtStep": 2}, timeoutSeconds=600).json["jobId"]

    # When workers keep taking it over
    job = _finished(api, job_id, timeout=60)

    # Then the job fails after three deaths at chunk 2, long before its timeout, and says so
    steps = logged_steps(tmp_path, "oom")
    assert job["status"] == "FAILED"
    assert job["error"].startswith("worker died 3 times while running chunk 2 ")
    assert time.monotonic() - started < 60
    assert [step for _, step in steps] == [1, 2, 2, 2]  # the fourth holder failed it without running it
    assert sum(proc.poll() == -signal.SIGKILL for proc in procs) == 3
    row = _row(mysql, job_id)
    assert (row["status"], row["deaths"], row["death_chunk"], row["attempts"]) == ("FAILED", 3, 2, 1)


def test_a_job_whose_worker_dies_at_different_chunks_keeps_going(api, events, settings, sqs, mysql):
    # Deaths count in a row at one chunk: progress between them starts the count again.
    _use(settings, lease_seconds=1, max_deaths=2)
    # The first pass runs from the message, which carries the payload as submitted; the others read the row.
    job_id = api.submit("probe", {"tag": "moving", "steps": 4, "crashAtStep": 2}).json["jobId"]
    runtime = runtime_module.get()
    for crash_at in (2, 3, 4):
        Probe.started.pop("moving", None)
        with mysql.cursor() as cur:  # the next pass crashes at `crash_at`, once
            cur.execute(
                "UPDATE jobs SET payload = JSON_SET(payload, '$.crashAtStep', %s) WHERE id = %s", (crash_at, job_id)
            )
        messages = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
        with pytest.raises(SimulatedCrash):
            events.invoke(messages)
        sqs.change_message_visibility(
            QueueUrl=settings.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
        )
        wait_until(lambda: not runtime.hot.leased([job_id]), timeout=3)
    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(4)
    assert (_row(mysql, job_id)["deaths"], _row(mysql, job_id)["death_chunk"]) == (1, 4)


# --- (b) the same message twice at once ----------------------------------------------------------
def test_the_same_message_delivered_twice_at_once_runs_each_chunk_once(api, events, sqs, settings):
    job_id = api.submit("probe", {"tag": "twice", "steps": 10, "stepMs": 20}).json["jobId"]
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": job_id}))
    messages = wait_until(lambda: (found := _receive_all(events, 2)) and found)

    both = [threading.Thread(target=events.invoke, args=([m],)) for m in messages]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(30)

    assert Probe.started["twice"] == list(range(1, 11))
    assert api.get(job_id).json["status"] == "COMPLETED"
    assert sqs.receive_message(QueueUrl=settings.jobs_queue_url).get("Messages") is None  # both consumed


def _receive_all(events, count):
    found = []
    for _ in range(20):
        found += events.receive()
        if len(found) >= count:
            return found
    return None


# --- (c) Redis loses everything -------------------------------------------------------------------
def test_after_redis_is_flushed_between_invocations_the_job_completes_from_the_mysql_checkpoint(
    api, sqs, settings, private_redis, mysql
):
    _use(settings, redis_url=private_redis, handoff_reserve_ms=100)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs, function_timeout=0.4)
    job_id = api.submit("probe", {"tag": "flushed", "steps": 12, "stepMs": 40}).json["jobId"]

    source.poll_once()  # runs a few chunks, then hands off before its time limit
    row = _row(mysql, job_id)
    assert row["status"] == "RUNNING" and 0 < row["checkpoint_seq"]
    redis_connect(private_redis).flushall()
    polled = api.get(job_id).json  # Redis has nothing: MySQL answers, with the hand-off's progress
    _drain(source)

    job = api.get(job_id).json
    assert polled["status"] == "RUNNING" and polled["progress"] > 0
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(12)
    assert Probe.started["flushed"] == list(range(1, 13))  # resumed exactly where the checkpoint was


def test_a_hand_off_whose_newest_checkpoint_redis_missed_resumes_from_the_mysql_one(
    api, sqs, settings, private_redis, mysql
):
    runtime = _use(settings, redis_url=private_redis, handoff_reserve_ms=100)
    source = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs, function_timeout=0.4)
    job_id = api.submit("probe", {"tag": "behind", "steps": 12, "stepMs": 40}).json["jobId"]
    source.poll_once()  # runs a few chunks, then hands off (its message carries the job and its sequence)
    seq = _row(mysql, job_id)["checkpoint_seq"]
    # Redis one chunk behind MySQL, as after a checkpoint that reached MySQL only (a Redis blip).
    redis, key = redis_connect(private_redis), runtime.hot.job_key(job_id)
    newest = json.loads(redis.hget(key, "ckpt"))
    state = newest["state"]
    older = {**newest, "seq": seq - 1, "chunks": newest["chunks"] - 1}
    older["state"] = {**state, "done": state["done"] - 1, "sum": state["sum"] - state["done"]}
    redis.hset(key, mapping={"seq": seq - 1, "ckpt": json.dumps(older)})

    _drain(source)

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(12)
    assert Probe.started["behind"] == list(range(1, 13))  # the chunk Redis missed is not run again


def test_a_redis_flush_in_the_middle_of_a_run_does_not_stop_or_corrupt_the_job(api, events, settings, private_redis):
    _use(settings, redis_url=private_redis)
    job_id = api.submit("probe", {"tag": "flush-mid", "steps": 30, "stepMs": 20}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()

    wait_until(lambda: api.get(job_id).json["progress"] >= 20)
    redis_connect(private_redis).flushall()
    worker.join(30)

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(30)
    assert Probe.started["flush-mid"] == list(range(1, 31))


# --- (d) the time limit forces hand-offs ------------------------------------------------------------
def test_the_time_limit_hands_the_job_off_and_the_result_equals_an_uninterrupted_run(
    api, sqs, settings, events, io_counts, mysql
):
    _use(settings, handoff_reserve_ms=100)
    whole = api.submit("probe", {"tag": "whole", "steps": 20, "stepMs": 30}).json["jobId"]
    events.drain()
    short = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs, function_timeout=0.35)
    job_id = api.submit("probe", {"tag": "handed", "steps": 20, "stepMs": 30}).json["jobId"]
    io_counts.reset()

    invocations = _drain(short)

    job, reference = api.get(job_id).json, api.get(whole).json
    assert invocations >= 3  # the first record, then one continuation per hand-off
    assert job["status"] == "COMPLETED"
    assert {k: job["result"][k] for k in ("done", "sum")} == {k: reference["result"][k] for k in ("done", "sum")}
    assert Probe.started["handed"] == list(range(1, 21))  # no chunk lost or repeated across hand-offs
    assert len(io_counts.mysql_writes) == 2 + (invocations - 1)  # start, finish, one per hand-off
    assert len(io_counts.mysql_statements) == len(io_counts.mysql_writes)  # a hand-off's message carries the job
    assert job["attempts"] == 1  # a hand-off is not a failed attempt


def test_records_with_no_time_left_are_sent_again_not_failed_toward_the_dead_letter_queue(
    api, sqs, settings, make_queue
):
    # maxReceiveCount 1: a record reported failed even once would land in the dead-letter queue.
    queue = make_queue(visibility_timeout=30, max_receive_count=1)
    _use(settings, jobs_queue_url=queue, handoff_reserve_ms=100)
    source = EventSource(sqs, queue, app_module.run_jobs, function_timeout=0.3)
    job_ids = [api.submit("probe", {"tag": f"batch-{i}", "steps": 8, "stepMs": 40}).json["jobId"] for i in range(3)]
    messages = _receive_all(source, 3)

    failed = source.invoke(messages, LambdaContext(timeout_seconds=0.3))
    _drain(source)

    assert failed == []
    assert [api.get(job_id).json["status"] for job_id in job_ids] == ["COMPLETED"] * 3
    dlq = sqs.get_queue_url(QueueName=queue.rsplit("/", 1)[1] + "-dlq")["QueueUrl"]
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


def _drain(source: EventSource, *, timeout: float = 30.0) -> int:
    """Invoke until the queue stays empty for a second; returns how many invocations ran."""
    invocations, quiet_since, deadline = 0, None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if source.poll_once(wait_seconds=0):
            invocations, quiet_since = invocations + 1, None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return invocations
        else:
            time.sleep(0.05)
    pytest.fail("the queue did not drain")


# --- (e) retries with backoff ----------------------------------------------------------------------
class _Ceiling(random.Random):
    """Full jitter that always draws the ceiling, so the growth of the delays shows."""

    def uniform(self, a, b):
        return b


def test_a_failing_step_is_retried_with_growing_delays_then_the_job_fails_with_its_error(
    api, events, settings, sqs, mysql
):
    runtime = _use(settings, retry_base_seconds=1)
    runtime.worker._rng = _Ceiling()
    job_id = api.submit("probe", {"tag": "failing", "steps": 3, "failAtStep": 2}, maxAttempts=3).json["jobId"]
    delays = []
    send = runtime.queue.send_job
    runtime.queue.send_job = lambda job_id, **kw: delays.append(kw.get("delay_seconds", 0)) or send(job_id, **kw)

    events.drain()  # attempt 1 fails at step 2; the retry is delayed, so nothing is visible yet
    retrying = api.get(job_id).json
    assert events.receive() == []
    job = poll_until_finished(events, api, job_id)

    assert retrying["status"] == "RUNNING" and retrying["attempts"] == 2
    assert retrying["error"] == "RuntimeError: probe failed at step 2"
    assert delays == [1, 2]  # base 1 s, doubled per attempt (the ceiling of full jitter)
    assert job["status"] == "FAILED" and job["attempts"] == 3
    assert job["error"] == "RuntimeError: probe failed at step 2 (attempt 3 of 3)"
    assert Probe.started["failing"] == [1, 2, 2, 2]  # each retry resumed from the checkpoint after step 1
    assert _row(mysql, job_id)["status"] == "FAILED"


def test_a_step_that_fails_once_succeeds_on_its_retry(api, events, settings):
    _use(settings, retry_base_seconds=1)
    job_id = api.submit("probe", {"tag": "flaky", "steps": 3, "failAtStep": 2, "failTimes": 1}).json["jobId"]

    job = poll_until_finished(events, api, job_id)

    assert job["status"] == "COMPLETED" and job["attempts"] == 2 and job["error"] is None
    assert Probe.started["flaky"] == [1, 2, 2, 3]


def test_full_jitter_stays_under_an_exponential_ceiling_capped_at_900_seconds(rt):
    policy, rng = rt.worker.retry, random.Random()
    for attempt in range(1, 15):
        ceiling = min(900, rt.settings.retry_base_seconds * 2 ** (attempt - 1))
        assert all(0 <= policy.backoff(attempt, rng) <= ceiling for _ in range(50))
    assert max(policy.backoff(20, rng) for _ in range(200)) > 450  # jitter spreads over the whole range


def test_a_bad_payload_fails_at_once_without_retries(api, events, mysql, monkeypatch):
    from chalicelib import errors
    from chalicelib.jobs.sleep import Sleep

    job_id = api.submit("sleep", {"steps": 1}, maxAttempts=5).json["jobId"]

    def newer_rule(self, payload, ctx):  # a payload that passed then but not now (e.g. a newer schema)
        raise errors.InvalidPayload("payload.steps must be at least 2")

    monkeypatch.setattr(Sleep, "validate", newer_rule)

    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1
    assert job["error"].startswith("InvalidPayload: ")


# --- (f) a poison message --------------------------------------------------------------------------
def test_a_poison_message_reaches_the_dead_letter_queue_and_the_job_reads_failed(api, sqs, settings, make_queue):
    queue = make_queue(visibility_timeout=1, max_receive_count=2)
    _use(settings, jobs_queue_url=queue, lease_seconds=1)
    source = EventSource(sqs, queue, app_module.run_jobs)
    dlq = sqs.get_queue_url(QueueName=queue.rsplit("/", 1)[1] + "-dlq")["QueueUrl"]
    dead_letters = EventSource(sqs, dlq, app_module.fail_dead_letters)
    # Every pass kills the process in step 2: the message is never deleted.
    job_id = api.submit("probe", {"tag": "poison", "steps": 3, "crashAtStep": 2, "crashAlways": True}).json["jobId"]

    crashes = 0
    for _ in range(30):
        messages = source.receive(wait_seconds=1)
        if messages:
            with pytest.raises(SimulatedCrash):
                source.invoke(messages)
            crashes += 1
        elif dead_letters.poll_once():
            break
    job = api.get(job_id).json

    assert crashes == 2
    assert job["status"] == "FAILED"
    assert job["error"].startswith("poison message after 2 receives")
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None  # the handler consumed it


def test_a_dead_letter_of_a_job_a_live_worker_holds_is_dropped(api, events, settings, rt, sqs):
    job_id = api.submit("probe", {"tag": "held", "steps": 2}).json["jobId"]
    rt.hot.acquire(job_id, "a-live-worker", lease_seconds=30)
    record = {"messageId": "m1", "body": json.dumps({"jobId": job_id}), "attributes": {"ApproximateReceiveCount": "6"}}

    assert rt.sweeper.fail_dead_letters([record]) == {"batchItemFailures": []}
    assert api.get(job_id).json["status"] == "PENDING"


# --- (g) SQS unavailable at submit -----------------------------------------------------------------
def test_when_sqs_is_down_at_submit_the_sweeper_sends_the_job_later_and_it_completes(api, events, settings, mysql):
    _use(settings, jobs_queue_url=settings.jobs_queue_url + "-gone")
    reply = api.submit("probe", {"tag": "outbox", "steps": 2})
    assert reply.status == 202 and events.drain() == 0  # nothing reached the queue
    runtime = _use(settings, pending_resend_seconds=0)  # SQS is back

    report = runtime.sweeper.sweep()
    events.drain()

    assert report.pending_sent == 1
    assert api.get(reply.json["jobId"]).json["status"] == "COMPLETED"


# --- (i) a batch with one failing record ------------------------------------------------------------
def test_a_batch_with_one_failing_record_sends_back_only_that_record(api, events, rt, sqs, settings):
    job_ids = [api.submit("probe", {"tag": f"part-{i}", "steps": 2}).json["jobId"] for i in range(3)]
    messages = _receive_all(events, 3)
    unlucky = next(m for m in messages if json.loads(m["Body"])["jobId"] == job_ids[1])
    acquire = rt.hot.acquire

    def redis_fails_for_one_job(job_id, *args, **kwargs):
        if job_id == job_ids[1]:
            from chalicelib.errors import HotStateUnavailable

            raise HotStateUnavailable("Redis: connection reset (injected)")
        return acquire(job_id, *args, **kwargs)

    rt.hot.acquire = redis_fails_for_one_job
    failed = events.invoke(messages)
    statuses = [api.get(job_id).json["status"] for job_id in job_ids]
    rt.hot.acquire = acquire
    sqs.change_message_visibility(
        QueueUrl=settings.jobs_queue_url, ReceiptHandle=unlucky["ReceiptHandle"], VisibilityTimeout=0
    )  # as if its visibility timeout ran out
    redelivered = _receive_all(events, 1)
    events.invoke(redelivered)

    assert failed == [unlucky["MessageId"]]
    assert statuses == ["COMPLETED", "PENDING", "COMPLETED"]
    assert [m["MessageId"] for m in redelivered] == [unlucky["MessageId"]]  # only it came back
    assert api.get(job_ids[1]).json["status"] == "COMPLETED"
    assert Probe.started["part-0"] == [1, 2] and Probe.started["part-2"] == [1, 2]


# --- leases: fencing and take-over --------------------------------------------------------------
def test_a_worker_whose_lease_was_taken_over_cannot_overwrite_the_new_holders_outcome(
    api, events, settings, sqs, mysql
):
    _use(settings, lease_seconds=1)
    job_id = api.submit("probe", {"tag": "fenced", "steps": 3, "gateAtStep": 3}).json["jobId"]
    Probe.gates["fenced"] = gate = threading.Event()
    stale = threading.Thread(target=events.drain)
    stale.start()  # holds the job, then stops in step 3 longer than its lease
    wait_until(lambda: Probe.started.get("fenced") == [1, 2, 3])
    time.sleep(1.2)
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": job_id}))

    events.drain()  # a new worker takes the expired lease over and finishes from the checkpoint
    finished = api.get(job_id).json
    gate.set()
    stale.join(30)

    job = api.get(job_id).json
    assert finished["status"] == "COMPLETED" and finished["result"]["lastPass"] == 2
    assert job["result"] == finished["result"] and job["finishedAt"] == finished["finishedAt"]
    assert Probe.started["fenced"] == [1, 2, 3, 3]


def test_the_sweeper_sends_again_a_running_job_whose_worker_died_with_its_message(
    api, events, settings, sqs, redis_client
):
    runtime = _use(settings, lease_seconds=1, stall_after_seconds=0)
    job_id = api.submit("probe", {"tag": "orphan", "steps": 4, "crashAtStep": 3}).json["jobId"]
    messages = events.receive()
    with pytest.raises(SimulatedCrash):
        events.invoke(messages)
    sqs.delete_message(QueueUrl=settings.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])  # lost
    assert runtime.sweeper.sweep().stalled_sent == 0  # the dead worker's lease still lives
    wait_until(lambda: not redis_client.exists(runtime.hot.lease_key(job_id)), timeout=3)
    first_seen = runtime.sweeper.sweep().stalled_sent  # no lease: marked, not yet sent
    time.sleep(1.1)  # a live holder would have taken its lease again within a lease period

    report = runtime.sweeper.sweep()
    events.drain()

    assert first_seen == 0 and report.stalled_sent == 1
    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == _expected(4)
    assert Probe.started["orphan"] == [1, 2, 3, 3, 4]


def test_a_job_the_sweeper_keeps_sending_again_to_a_dying_worker_fails_after_max_deaths(
    api, events, settings, sqs, redis_client
):
    # Given a job that crashes its worker in chunk 3 every time, and whose message is lost each time
    runtime = _use(settings, lease_seconds=1, stall_after_seconds=0, max_deaths=2)
    job_id = api.submit("probe", {"tag": "resent", "steps": 4, "crashAtStep": 3, "crashAlways": True}).json["jobId"]
    crashes = 0
    for _ in range(4):
        messages = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
        try:
            events.invoke(messages)
            break
        except SimulatedCrash:
            crashes += 1
        sqs.delete_message(QueueUrl=settings.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
        # When only the sweeper sends it again (once two passes a lease period apart saw no lease)
        wait_until(lambda: not redis_client.exists(runtime.hot.lease_key(job_id)), timeout=3)
        runtime.sweeper.sweep()
        time.sleep(1.1)
        assert runtime.sweeper.sweep().stalled_sent == 1

    # Then the take-overs the re-sends led to counted the deaths, and the job failed after the bound
    job = api.get(job_id).json
    assert crashes == 2
    assert job["status"] == "FAILED" and job["error"].startswith("worker died 2 times while running chunk 3 ")
    assert Probe.started["resent"] == [1, 2, 3, 3]


# --- timeouts and retention ------------------------------------------------------------------------
def test_a_job_past_its_timeout_fails_at_its_next_chunk(api, events):
    job_id = api.submit("probe", {"tag": "slow", "steps": 50, "stepMs": 100}, timeoutSeconds=1).json["jobId"]

    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["error"] == "timed out: ran longer than timeoutSeconds (1)"
    assert 8 <= len(Probe.started["slow"]) <= 12


def test_the_sweeper_fails_a_running_job_past_its_timeout_that_no_worker_runs(api, rt, mysql):
    job_id = api.submit("probe", {"tag": "abandoned", "steps": 2}, timeoutSeconds=60).json["jobId"]
    with mysql.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET status = 'RUNNING', started_at = NOW(3) - INTERVAL 61 SECOND WHERE id = %s", (job_id,)
        )

    report = rt.sweeper.sweep()

    assert report.timed_out == 1
    job = api.get(job_id).json  # from Redis: the sweeper wrote the final view
    assert job["status"] == "FAILED" and job["error"] == "timed out: ran longer than timeoutSeconds (60)"


def test_the_sweeper_purges_finished_jobs_past_retention_and_keeps_the_rest(api, events, rt, mysql):
    old, recent = (api.submit("sleep", {"steps": 1, "stepMs": 0}).json["jobId"] for _ in range(2))
    events.drain()
    waiting = api.submit("sleep", {"steps": 1}).json["jobId"]
    with mysql.cursor() as cur:
        cur.execute("UPDATE jobs SET updated_at = NOW(3) - INTERVAL 8 DAY WHERE id IN (%s, %s)", (old, waiting))

    report = rt.sweeper.sweep()

    with mysql.cursor() as cur:
        cur.execute("SELECT id FROM jobs")
        left = {row["id"] for row in cur.fetchall()}
    assert report.purged == 1
    assert left == {recent, waiting}  # an old PENDING job is sent again, never purged
