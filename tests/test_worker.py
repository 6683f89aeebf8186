"""The worker Lambda fed real SQS events read from the queue: lifecycle, failure, budgets, faults."""

import json
import threading
from dataclasses import replace

import pytest

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime
from tests.conftest import Probe, SimulatedCrash, wait_until


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def test_a_sleep_job_runs_from_pending_to_completed(api, events, mysql, redis_client, settings, sqs, rt):
    job_id = api.submit("sleep", {"steps": 3, "stepMs": 1}).json["jobId"]

    assert events.drain() == 1

    reply = api.get(job_id)
    assert reply.status == 200
    job = reply.json
    assert job["status"] == "COMPLETED"
    assert job["progress"] == 100
    assert job["progressDetail"] == {"done": 3, "total": 3, "stage": "sleeping"}
    assert job["result"] == {"steps": 3, "sleptMs": 3}
    assert job["attempts"] == 1 and job["error"] is None
    assert job["createdAt"] <= job["startedAt"] <= job["finishedAt"]
    assert "retry-after" not in reply.headers
    row = _row(mysql, job_id)
    assert row["status"] == "COMPLETED" and json.loads(row["result"]) == {"steps": 3, "sleptMs": 3}
    assert 0 < redis_client.ttl(rt.hot.job_key(job_id)) <= settings.terminal_ttl_seconds
    assert not redis_client.hexists(rt.hot.job_key(job_id), hotstate.CHECKPOINT_FIELD)  # the final view drops it
    assert sqs.receive_message(QueueUrl=settings.jobs_queue_url).get("Messages") is None


def test_progress_is_visible_while_the_job_runs(api, events):
    job_id = api.submit("probe", {"steps": 30, "stepMs": 30, "tag": "visible"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()

    running = wait_until(lambda: (r := api.get(job_id).json)["status"] == "RUNNING" and r["progress"] > 0 and r)
    worker.join(30)

    assert 0 < running["progress"] < 100
    assert running["progressDetail"]["total"] == 30
    assert running["etaSeconds"] is not None and running["stalled"] is False
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_a_failing_step_on_its_last_attempt_ends_the_job_failed_with_its_error(api, events, mysql):
    job_id = api.submit("sleep", {"steps": 3, "stepMs": 1, "failAtStep": 2}, maxAttempts=1).json["jobId"]

    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED"
    assert job["error"] == "StepFailed: failed at step 2 as the payload asked (attempt 1 of 1)"
    assert job["progressDetail"]["done"] == 1 and job["result"] is None
    assert _row(mysql, job_id)["status"] == "FAILED"


def test_each_chunk_costs_one_redis_round_trip_and_no_mysql_write(api, events, io_counts):
    def run(steps):
        job_id = api.submit("sleep", {"steps": steps, "stepMs": 0}).json["jobId"]
        messages = events.receive()
        io_counts.reset()
        events.invoke(messages)
        counted = io_counts.redis_round_trips, io_counts.mysql_writes
        assert api.get(job_id).json["status"] == "COMPLETED"
        return counted

    run(1)  # warm up: connections, script loading
    trips_5, writes_5 = run(5)
    trips_25, writes_25 = run(25)

    # Per invocation: read the checkpoint, write RUNNING; then one round trip per chunk (the last
    # one is the final write).
    assert trips_5 == 5 + 2 and trips_25 == 25 + 2
    assert len(writes_5) == len(writes_25) == 2  # start and finish, whatever the chunk count


def test_a_job_costs_three_mysql_statements_in_all_whatever_its_chunks(api, events, io_counts):
    def run(steps):
        io_counts.reset()
        job_id = api.submit("sleep", {"steps": steps, "stepMs": 0}).json["jobId"]
        events.drain()
        statements = [s.split()[0].upper() for s in io_counts.mysql_statements]
        assert api.get(job_id).json["status"] == "COMPLETED"
        return statements

    run(1)  # warm up: connections, script loading

    # The insert, the start, the final write: the message carries what the start needs, so no read.
    assert run(5) == run(50) == ["INSERT", "UPDATE", "UPDATE"]


def test_a_first_message_delivered_again_after_its_job_finished_runs_nothing(api, events, sqs, settings, io_counts):
    job_id = api.submit("probe", {"steps": 2, "tag": "carried-late"}).json["jobId"]
    first = events.receive()
    events.invoke(first)
    io_counts.reset()
    # SQS delivers a message at least once: the same body (it carries the row as it was at submit) again.
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=first[0]["Body"])

    events.drain()

    assert Probe.started["carried-late"] == [1, 2]
    assert api.get(job_id).json["status"] == "COMPLETED"
    assert [s.split()[0].upper() for s in io_counts.mysql_statements] == ["SELECT"]  # the row said it ended


def test_a_duplicate_delivery_of_a_finished_job_runs_nothing(api, events, sqs, settings):
    job_id = api.submit("probe", {"steps": 2, "tag": "dup-finished"}).json["jobId"]
    events.drain()
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": job_id}))

    events.drain()

    assert Probe.started["dup-finished"] == [1, 2]
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_a_malformed_message_is_dropped_without_failing_its_batch(api, events, sqs, settings):
    job_id = api.submit("sleep", {"steps": 1, "stepMs": 0}).json["jobId"]
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody="not json")
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=json.dumps({"jobId": "01" + "Z" * 24}))
    messages = []
    for _ in range(10):
        messages += events.receive()
    assert len(messages) == 3

    failed = events.invoke(messages)

    assert failed == []
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_when_redis_is_down_the_worker_reports_the_record_for_redelivery(settings, api, events, mysql):
    job_id = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
    messages = events.receive()
    runtime_module.use(Runtime(replace(settings, redis_url="redis://127.0.0.1:1/0")))

    failed = events.invoke(messages)

    assert failed == [messages[0]["MessageId"]]
    assert _row(mysql, job_id)["status"] == "PENDING"  # no lease could be taken: nothing started

    runtime_module.use(Runtime(settings))  # Redis is back; SQS delivers the message again
    events.invoke(messages)
    assert api.get(job_id).json["status"] == "COMPLETED"


def test_a_result_too_large_for_redis_is_served_from_mysql(settings, api, events, redis_client):
    runtime = Runtime(replace(settings, inline_result_bytes=1000))
    runtime_module.use(runtime)
    job_id = api.submit("probe", {"steps": 1, "tag": "big", "resultBytes": 5000}).json["jobId"]

    events.drain()

    hot = hotstate.decode(redis_client.hget(runtime.hot.job_key(job_id), "job"))
    assert hot.status is JobStatus.COMPLETED and hot.result is None
    assert api.get(job_id).json["result"]["blob"] == "x" * 5000


def test_a_crashed_run_resumes_from_its_checkpoint_redoing_at_most_one_chunk(api, events, sqs, settings, redis_client):
    rt = Runtime(replace(settings, lease_seconds=1))
    runtime_module.use(rt)
    job_id = api.submit("probe", {"steps": 6, "crashAtStep": 4, "tag": "crash"}).json["jobId"]
    written = []
    write = rt.hot.write
    rt.hot.write = lambda job, **k: written.append(job.progress) or write(job, **k)
    messages = events.receive()

    with pytest.raises(SimulatedCrash):
        events.invoke(messages)  # the process dies in chunk 4; the message is not deleted
    assert api.get(job_id).json["progress"] == 50
    wait_until(lambda: not redis_client.exists(rt.hot.lease_key(job_id)), timeout=3)
    sqs.change_message_visibility(
        QueueUrl=settings.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )  # as if the visibility timeout ran out
    events.drain()

    assert Probe.started["crash"] == [1, 2, 3, 4, 4, 5, 6]
    assert api.get(job_id).json["status"] == "COMPLETED"
    assert written == sorted(written)  # progress never went backwards, not even on resume
