"""A batch's `then` runs exactly once, whatever happens at the members' ends.

Given the API and workers over real MariaDB, Redis and moto's SQS, counting the chunks every run
starts (the probe job type, as the durability tests do): a worker killed in the last member's final
write (MySQL final, Redis not) and that member's message delivered again; two members ending at the
same instant; a 500-job batch run by two worker processes with duplicate messages of its last
members. Each time the `then` job's chunks run once each, and the batch's counts are right.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib.hotstate import FINAL_SEQ, HotState
from chalicelib.lifecycle import Lifecycle
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime
from local import services, worker_process
from local.eventsource import EventSource
from tests.conftest import wait_until
from tests.support.probe import Probe, SimulatedCrash, logged_steps


def _probe(tag: str, steps: int = 1, **extra) -> dict:
    return {"type": "probe", "payload": {"tag": f"fi-{tag}", "steps": steps, **extra}}


def _batch(api, jobs, then) -> dict:
    reply = api.request("POST", "/batches", body={"jobs": jobs, "then": then})
    assert reply.status == 202
    return reply.json


def _status(api, job_id) -> str:
    return api.get(job_id).json["status"]


@pytest.fixture
def short_visibility(rt, settings, sqs):
    """The test's runtime on a queue whose messages come back 2 s after a crashed invocation, once
    the dead worker's lease (1 s) has expired, as LEASE_SECONDS <= the visibility timeout ensures on AWS."""
    url = services.create_jobs_queue(sqs, f"fanin-{settings.jobs_queue_url.rsplit('-', 1)[-1]}", visibility_timeout=2)
    runtime = Runtime(replace(settings, jobs_queue_url=url, lease_seconds=1))
    runtime_module.use(runtime)
    yield runtime
    sqs.delete_queue(QueueUrl=url)


def test_a_crash_in_the_last_members_final_write_and_its_redelivery_run_then_once(
    short_visibility, api, sqs, monkeypatch
):
    import app as app_module

    events = EventSource(sqs, short_visibility.settings.jobs_queue_url, app_module.run_jobs, batch_size=1)
    submitted = _batch(api, [_probe("c0"), _probe("c1")], _probe("then-crash", steps=3))
    first, last = submitted["jobIds"]
    write = HotState.write
    crashed = []

    def crash_in_final_write(self, job, *, seq, **kwargs):
        if seq >= FINAL_SEQ and job.id == last and not crashed:
            crashed.append(job.id)  # MySQL has the end; the process dies before Redis hears of it
            raise SimulatedCrash("killed in the final write")
        return write(self, job, seq=seq, **kwargs)

    monkeypatch.setattr(HotState, "write", crash_in_final_write)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = events.receive(wait_seconds=1)
        if records:
            try:
                events.invoke(records)
            except SimulatedCrash:
                pass  # the record stays in flight; SQS delivers it again after the visibility timeout
        if _status(api, submitted["thenJobId"]) == "COMPLETED":
            break

    assert crashed == [last]
    assert Probe.started["fi-then-crash"] == [1, 2, 3]  # once, though its release was lost with the crash
    batch = api.request("GET", f"/batches/{submitted['batchId']}").json
    assert batch["status"] == "COMPLETED" and batch["counts"]["COMPLETED"] == 2


def test_two_members_ending_at_the_same_instant_release_then_once(api, events, sqs, settings, monkeypatch):
    submitted = _batch(api, [_probe("s0"), _probe("s1")], _probe("then-same", steps=2))
    members = set(submitted["jobIds"])
    both_in_mysql = threading.Barrier(2, timeout=10)
    publish = Lifecycle._publish

    def meet_then_publish(self, job, token, *, ride_out):
        if job.id in members:
            both_in_mysql.wait()  # both final UPDATEs are committed before either Redis write
        return publish(self, job, token, ride_out=ride_out)

    monkeypatch.setattr(Lifecycle, "_publish", meet_then_publish)
    records = wait_until(lambda: (found := events.receive()) and len(found) == 2 and found)
    threads = [threading.Thread(target=events.invoke, args=([record],)) for record in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.setattr(Lifecycle, "_publish", publish)

    attributes = sqs.get_queue_attributes(
        QueueUrl=settings.jobs_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == 1  # one message for then
    events.drain()
    assert Probe.started["fi-then-same"] == [1, 2]
    assert _status(api, submitted["thenJobId"]) == "COMPLETED"


@pytest.mark.timeout(240)
def test_a_500_job_batch_on_two_worker_processes_runs_then_once_despite_duplicates(api, settings, sqs, tmp_path, mysql):
    submitted = _batch(api, [_probe(f"m{i % 5}") for i in range(500)], _probe("then-500", steps=3))
    for job_id in submitted["jobIds"][-20:]:  # the last members' messages, delivered twice
        sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=f'{{"jobId": "{job_id}"}}')
    procs = [worker_process.start(settings, PROBE_LOG=str(tmp_path)) for _ in range(2)]
    try:
        wait_until(lambda: _status(api, submitted["thenJobId"]) == "COMPLETED", timeout=200, interval=0.5)
    finally:
        for proc in procs:
            services.stop(proc, timeout=5)

    assert [step for _, step in logged_steps(tmp_path, "fi-then-500")] == [1, 2, 3]
    assert sum(len(logged_steps(tmp_path, f"fi-m{i}")) for i in range(5)) == 500  # each member's chunk once
    batch = api.request("GET", f"/batches/{submitted['batchId']}").json
    assert batch["status"] == "COMPLETED" and batch["progress"] == 100
    assert batch["counts"] == {status.value: (500 if status is JobStatus.COMPLETED else 0) for status in JobStatus}
    assert batch["then"] == {"jobId": submitted["thenJobId"], "status": "COMPLETED"}
