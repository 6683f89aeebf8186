"""Running slots: an owner's maxRunningJobs and a type's max_concurrency hold in the worker.

Given workers over real MariaDB, Redis and moto's SQS, with a tenants document in moto's S3, when
more of a client's jobs are queued than its plan may run at once, then never more than that many
are RUNNING (sampled from MySQL while four worker processes drain them), the others wait PENDING
saying why, all complete, and none reaches the dead-letter queue; a worker that dies holding a slot
frees it when its lease expires; a type's max_concurrency holds across owners.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib import tenants
from chalicelib.hotstate import Slot
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits
from local import services, worker_process
from tests.conftest import put_tenants, wait_until
from tests.support.probe import Probe, SimulatedCrash, logged_steps


@pytest.fixture
def limited(settings, s3, bucket, rt):
    """acme (key-a) may run 2 jobs at once, other (key-b) 20; leases of 2 s, deferrals of at most 2 s."""
    document = tenants.document(
        {"acme": ("small", ["key-a"], Limits(100, 2, 3600)), "other": ("big", ["key-b"], Limits(100, 20, 3600))}
    )
    changed = replace(settings, tenants_url=put_tenants(s3, bucket, document), lease_seconds=2, defer_max_seconds=2)
    runtime_module.use(Runtime(changed))
    return changed


def _running(mysql, owner: str) -> int:
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs WHERE owner = %s AND status = 'RUNNING'", (owner,))
        return cur.fetchone()["n"]


def _statuses(mysql, job_ids) -> list[str]:
    with mysql.cursor() as cur:
        cur.execute(f"SELECT status FROM jobs WHERE id IN ({', '.join(['%s'] * len(job_ids))})", tuple(job_ids))
        return [row["status"] for row in cur.fetchall()]


def test_four_workers_never_run_more_of_a_clients_jobs_than_its_plan_allows(limited, api, mysql, sqs, tmp_path):
    name = f"jobs-{uuid.uuid4().hex[:12]}"
    url = services.create_jobs_queue(sqs, name, visibility_timeout=30, max_receive_count=1)
    dlq = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
    settings = replace(limited, jobs_queue_url=url, jobs_queue_name=name)
    runtime_module.use(Runtime(settings))
    ids = [api.submit("probe", {"tag": f"cap-{i}", "steps": 3, "stepMs": 100}).json["jobId"] for i in range(12)]
    procs = [worker_process.start(settings, batch_size=1, PROBE_LOG=str(tmp_path)) for _ in range(4)]
    most, samples = 0, 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            most, samples = max(most, _running(mysql, "acme")), samples + 1
            if all(status == "COMPLETED" for status in _statuses(mysql, ids)):
                break
            time.sleep(0.02)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)
        dead = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        for queue in (url, dlq):
            sqs.delete_queue(QueueUrl=queue)

    assert _statuses(mysql, ids) == ["COMPLETED"] * 12
    assert most == 2 and samples > 30  # the cap was reached, and never passed
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert all([step for _, step in logged_steps(tmp_path, f"cap-{i}")] == [1, 2, 3] for i in range(12))


def _invoke_in_thread(events, records):
    failures = []

    def invoke():
        try:
            events.invoke(records)
        except BaseException as exc:  # noqa: BLE001 - a SimulatedCrash ends the "process"
            failures.append(exc)

    thread = threading.Thread(target=invoke)
    thread.start()
    return thread, failures


def _by_job(records) -> dict[str, dict]:
    return {json.loads(record["Body"])["jobId"]: record for record in records}


def test_a_job_over_the_cap_waits_pending_saying_why_and_runs_once_a_slot_frees(limited, api, events, redis_client):
    first = api.submit("probe", {"tag": "holder-1", "steps": 1, "gateAtStep": 1}).json["jobId"]
    second = api.submit("probe", {"tag": "holder-2", "steps": 1, "gateAtStep": 1}).json["jobId"]
    third = api.submit("probe", {"tag": "waiter", "steps": 2}).json["jobId"]
    records = _by_job(events.receive())
    holders = [_invoke_in_thread(events, [records[job_id]]) for job_id in (first, second)]
    wait_until(lambda: Probe.started.get("holder-1") and Probe.started.get("holder-2"))

    events.invoke([records[third]])

    waiting = api.get(third).json
    assert waiting["status"] == "PENDING" and waiting["attempts"] == 0
    assert waiting["message"] == "waiting for a free slot (2 of 2 running: maxRunningJobs of plan small)"
    assert "waiter" not in Probe.started
    [deferred] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)  # after its delay
    assert json.loads(deferred["Body"]) == {"jobId": third, "owner": "acme", "deferrals": 1}
    assert redis_client.smembers(runtime_module.get().hot.slot_key("owner:acme")) == {first, second}

    for tag in ("holder-1", "holder-2"):
        Probe.gates[tag].set()
    for thread, failures in holders:
        thread.join(10)
        assert failures == []
    events.invoke([deferred])

    assert api.get(third).json["status"] == "COMPLETED"
    assert Probe.started["waiter"] == [1, 2]


def test_a_worker_that_dies_holding_a_slot_frees_it_when_its_lease_expires(limited, api, events):
    doomed = api.submit("probe", {"tag": "dies", "steps": 3, "crashAtStep": 1}).json["jobId"]
    other = api.submit("probe", {"tag": "other", "steps": 1, "gateAtStep": 1}).json["jobId"]
    later = api.submit("probe", {"tag": "later", "steps": 1}).json["jobId"]
    records = _by_job(events.receive())
    with pytest.raises(SimulatedCrash):  # the worker "dies" in the chunk: its lease is left to expire
        events.invoke([records[doomed]])
    holder, _ = _invoke_in_thread(events, [records[other]])
    wait_until(lambda: Probe.started.get("other"))

    events.invoke([records[later]])
    assert api.get(later).json["message"] == "waiting for a free slot (2 of 2 running: maxRunningJobs of plan small)"

    time.sleep(limited.lease_seconds + 0.2)  # the dead worker's lease expires, and its slot with it
    [deferred] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
    events.invoke([deferred])
    assert api.get(later).json["status"] == "COMPLETED"
    assert api.get(doomed).json["status"] == "RUNNING"  # its redelivery will take it over
    Probe.gates["other"].set()
    holder.join(10)
    assert api.get(other).json["status"] == "COMPLETED"


def test_a_types_max_concurrency_holds_across_owners(limited, api, events):
    mine = api.submit("solo", {"tag": "solo-a", "steps": 1, "gateAtStep": 1}, key="key-a").json["jobId"]
    theirs = api.submit("solo", {"tag": "solo-b", "steps": 1}, key="key-b").json["jobId"]
    records = _by_job(events.receive())
    holder, _ = _invoke_in_thread(events, [records[mine]])
    wait_until(lambda: Probe.started.get("solo-a"))

    events.invoke([records[theirs]])

    assert api.get(theirs, key="key-b").json["message"] == (
        "waiting for a free slot (1 of 1 running: max_concurrency of type solo)"
    )
    Probe.gates["solo-a"].set()
    holder.join(10)
    [again] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
    events.invoke([again])
    assert api.get(theirs, key="key-b").json["status"] == "COMPLETED"
    assert api.get(mine).json["status"] == "COMPLETED"


def test_slots_are_all_or_none_and_a_running_job_is_counted_but_never_refused(rt):
    hot = rt.hot
    owner, solo = Slot("owner:t", 1), Slot("type:t", 2)
    for job_id in ("a", "b", "c"):
        assert hot.acquire(job_id, "tok", lease_seconds=30).held

    assert hot.take_slots("a", [owner, solo]).taken
    refused = hot.take_slots("b", [solo, owner])
    assert (refused.taken, refused.full, refused.running) == (False, owner, 1)
    assert hot.take_slots("b", [solo]).taken  # the refusal above took nothing of `solo`
    assert hot.take_slots("c", [owner], running=True).taken  # already running: counted, not stopped
    assert hot.take_slots("a", [owner, solo]).taken  # a member asks again (a hand-off): still its own


def test_a_limited_job_costs_the_worker_one_redis_round_trip_more_than_an_unlimited_one(
    limited, api, events, io_counts
):
    def worker_round_trips(key: str) -> int:
        api.submit("sleep", {"steps": 2}, key=key)
        io_counts.reset()
        events.drain()
        return io_counts.redis_round_trips

    runtime_module.use(Runtime(replace(limited, tenants_url=None)))
    worker_round_trips("key-z")  # the first makes the runtime's connections (their set-up is counted)
    unlimited = worker_round_trips("key-z")
    runtime_module.use(Runtime(limited))
    worker_round_trips("key-a")  # the first reads the tenants document (S3), not Redis
    assert worker_round_trips("key-a") == unlimited + 1


def test_a_job_of_a_type_the_deployment_no_longer_has_fails_at_once_not_in_a_redelivery_loop(
    limited, api, events, mysql, sqs
):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    with mysql.cursor() as cur:  # a type removed from JOB_TYPES since the job was queued
        cur.execute("UPDATE jobs SET type = 'gone' WHERE id = %s", (job_id,))
    (queued,) = events.receive()  # its message carries the row: the type as it was queued too
    body = json.loads(queued["Body"])
    body["job"]["type"] = "gone"
    sqs.delete_message(QueueUrl=limited.jobs_queue_url, ReceiptHandle=queued["ReceiptHandle"])
    sqs.send_message(QueueUrl=limited.jobs_queue_url, MessageBody=json.dumps(body))

    handled = events.drain()

    job = api.get(job_id).json
    assert handled == 1 and job["status"] == "FAILED" and job["attempts"] == 1
    assert job["error"].startswith("UnknownJobType: unknown job type 'gone'")
