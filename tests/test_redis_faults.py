"""Redis that blips, pauses or evicts (issue 16, findings 3-5): a restart mid-run neither strands a job
nor moves its progress back, a terminal state MySQL holds is never shown active for more than a
poll or two, and a checkpoint that disappears from Redis cannot strand a job.

Each test that stops, pauses or empties Redis does it to a redis-server of its own
(`services.start_redis`: `--save ''`, so a restart loses everything it held).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import redis

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.models import JobStatus, utcnow
from chalicelib.runtime import Runtime
from local import services
from tests.conftest import poll_until_finished, wait_until
from tests.support.probe import Probe, SimulatedCrash


def _use(settings, **changes) -> Runtime:
    runtime = Runtime(replace(settings, **changes))
    runtime_module.use(runtime)
    return runtime


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test alone that the test may stop, restart and pause: (url, restart)."""
    procs = [services.start_redis(tmp_path)]
    port = procs[0][1]

    def restart(down_seconds: float) -> None:
        services.stop(procs[-1][0])  # SIGTERM; with --save '' the data is gone
        time.sleep(down_seconds)
        procs.append(services.start_redis(tmp_path, port=port))

    yield f"redis://127.0.0.1:{port}/0", restart
    services.stop(procs[-1][0])


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


# --- finding 3: a short outage ---------------------------------------------------------------------
def test_a_redis_restart_mid_run_completes_the_job_with_progress_never_going_back(
    api, events, settings, own_redis, mysql
):
    # Given a job of 40 chunks running against a Redis that restarts (down 1 s, comes back empty)
    url, restart = own_redis
    _use(settings, redis_url=url)
    job_id = api.submit("probe", {"tag": "restart", "steps": 40, "stepMs": 40}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(job_id).json["progress"] >= 25)
    shown, polled = [], []

    def poll() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            polled.append(job := api.get(job_id).json)
            shown.append(job["progress"])
            if JobStatus(job["status"]).terminal:
                return

    # When Redis restarts mid-run while a client polls throughout
    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    restart(1.0)  # in this thread: a server dies with the thread that started it (PR_SET_PDEATHSIG)
    poller.join(40)
    worker.join(30)
    job = polled[-1]

    # Then the job completed on its first attempt, each chunk run once, progress never lower than shown
    assert job["status"] == "COMPLETED" and job["attempts"] == 1
    assert {k: job["result"][k] for k in ("done", "sum")} == {"done": 40, "sum": 820}
    assert Probe.started["restart"] == list(range(1, 41))
    assert shown == sorted(shown), f"progress went back: {shown}"
    assert _row(mysql, job_id)["deaths"] == 0


def test_a_poll_at_the_start_of_an_outage_waits_for_the_workers_progress_instead_of_showing_older(
    api, events, settings, own_redis
):
    # Given a job whose third chunk is still running when its Redis goes down
    url, restart = own_redis
    _use(settings, redis_url=url)
    job_id = api.submit("probe", {"tag": "window", "steps": 10, "stepMs": 10, "gateAtStep": 3}).json["jobId"]
    Probe.gates["window"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("window") == [1, 2, 3])
    shown = api.get(job_id).json["progress"]
    answers = []

    def outage_then_poll() -> None:
        time.sleep(0.3)  # Redis is down by now
        threading.Timer(0.3, gate.set).start()  # the chunk ends while the poll below waits
        answers.append(api.get(job_id).json)

    # When a client polls right after the outage began, before the worker has noticed it
    poller = threading.Thread(target=outage_then_poll)
    poller.start()
    restart(2.0)  # in this thread: the server dies with the thread that started it
    poller.join(10)
    worker.join(30)

    # Then the answer (from MySQL, once the worker put its checkpoint there) is not older than shown
    assert shown == 20
    assert answers[0]["status"] == "RUNNING" and answers[0]["progress"] >= shown


def test_an_outage_longer_than_the_ride_out_hands_the_job_off_durably(api, events, settings, own_redis, mysql):
    # Given a job whose chunk ends while its Redis is down for longer than the worker waits
    url, restart = own_redis
    _use(settings, redis_url=url, dependency_wait_seconds=1)
    job_id = api.submit("probe", {"tag": "long-down", "steps": 6, "stepMs": 10, "gateAtStep": 3}).json["jobId"]
    Probe.gates["long-down"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("long-down") == [1, 2, 3])

    # When the chunk ends in an outage longer than the worker's ride-out
    def end_chunk() -> None:
        time.sleep(0.2)
        gate.set()

    threading.Thread(target=end_chunk).start()
    restart_done = threading.Event()
    observed = {}

    def observe() -> None:
        worker.join(30)
        observed["row"] = _row(mysql, job_id)
        observed["during"] = api.get(job_id).json  # served from MySQL: Redis is still down
        restart_done.wait(30)

    observer = threading.Thread(target=observe)
    observer.start()
    restart(hotstate.RIDE_OUT_SECONDS + 3)  # in this thread: the server dies with the thread that started it
    restart_done.set()
    observer.join(30)
    row, during = observed["row"], observed["during"]
    job = poll_until_finished(events, api, job_id)

    # Then MySQL took the checkpoint and a continuation carried the job on after the outage
    assert row["status"] == "RUNNING" and row["progress"] == 50 and row["checkpoint_seq"] > 0
    assert during["progress"] == 50 and during["message"].startswith("waiting for Redis: ")
    assert job["status"] == "COMPLETED" and job["attempts"] == 1
    assert Probe.started["long-down"] == [1, 2, 3, 4, 5, 6]


# --- finding 4: a terminal state shown active ------------------------------------------------------
def _running_view(rt: Runtime, job_id: str, *, quiet_seconds: float, cadence_ms: int = 100) -> None:
    """Make the job RUNNING in MySQL and in Redis, its last heartbeat `quiet_seconds` ago."""
    job = rt.store.get_job(job_id)
    then = utcnow() - timedelta(seconds=quiet_seconds)
    job.status, job.started_at, job.updated_at, job.progress = JobStatus.RUNNING, then, then, 40
    rt.hot.write(job.snapshot(), seq=5, cadence_ms=cadence_ms)


def test_writes_paused_while_the_sweeper_fails_an_overdue_job_get_shows_failed_within_two_polls(
    api, settings, own_redis, mysql
):
    # Given a RUNNING job past its timeout that no worker runs, its hot view RUNNING
    url, _ = own_redis
    rt = _use(settings, redis_url=url)
    job_id = api.submit("probe", {"tag": "overdue", "steps": 3}, timeoutSeconds=60).json["jobId"]
    with mysql.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET status = 'RUNNING', started_at = NOW(3) - INTERVAL 61 SECOND WHERE id = %s", (job_id,)
        )
    _running_view(rt, job_id, quiet_seconds=0.5)
    redis.Redis.from_url(url).execute_command("CLIENT", "PAUSE", "6000", "WRITE")

    # When the sweeper fails it while Redis takes no writes, and a client polls once a second
    sweeper = threading.Thread(target=rt.sweeper.sweep)
    sweeper.start()
    wait_until(lambda: _row(mysql, job_id)["status"] == "FAILED")
    polls = []
    for _ in range(2):
        time.sleep(1)
        polls.append(api.get(job_id).json["status"])
        if polls[-1] == "FAILED":
            break
    sweeper.join(30)

    # Then GET shows FAILED within two polls, and Redis holds the final view afterwards
    assert "FAILED" in polls, polls
    wait_until(lambda: redis.Redis.from_url(url).hget(rt.hot.job_key(job_id), "job"), timeout=10)
    hot = rt.hot.get(job_id)
    assert hot is not None and hot.job.status is JobStatus.FAILED


def test_writes_paused_during_the_workers_final_write_get_shows_completed_within_two_polls(
    api, events, settings, own_redis, mysql
):
    # Given a job whose last chunk waits for the test
    url, _ = own_redis
    rt = _use(settings, redis_url=url)
    job_id = api.submit("probe", {"tag": "final-paused", "steps": 3, "stepMs": 10, "gateAtStep": 3}).json["jobId"]
    Probe.gates["final-paused"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("final-paused") == [1, 2, 3])

    # When Redis takes no writes while the job ends, and a client polls once a second
    redis.Redis.from_url(url).execute_command("CLIENT", "PAUSE", "6000", "WRITE")
    gate.set()
    wait_until(lambda: _row(mysql, job_id)["status"] == "COMPLETED")
    polls = []
    for _ in range(2):
        time.sleep(1)
        polls.append(api.get(job_id).json["status"])
        if polls[-1] == "COMPLETED":
            break
    worker.join(30)

    # Then GET shows COMPLETED within two polls, and so does Redis once it takes writes again
    assert "COMPLETED" in polls, polls
    assert rt.hot.get(job_id).job.status is JobStatus.COMPLETED


def test_get_of_a_live_job_reads_mysql_never_and_a_quiet_view_once(api, events, settings, io_counts):
    # Given a job mid-run, its worker waiting inside a chunk
    rt = _use(settings)
    job_id = api.submit("probe", {"tag": "live", "steps": 4, "stepMs": 10, "gateAtStep": 2}).json["jobId"]
    Probe.gates["live"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("live") == [1, 2])
    api.get(job_id)  # warm connections
    io_counts.reset()

    # When a client polls it while it is live
    live = [api.get(job_id).json for _ in range(3)]
    live_mysql = list(io_counts.mysql_statements)

    # And polls again once its heartbeat is older than its cadence says (the view is suspect)
    _running_view(rt, job_id, quiet_seconds=60, cadence_ms=100)
    io_counts.reset()
    first = api.get(job_id).json
    first_mysql = list(io_counts.mysql_statements)
    io_counts.reset()
    second = api.get(job_id).json
    second_mysql = list(io_counts.mysql_statements)
    gate.set()
    worker.join(30)

    # Then the live polls read no MySQL; the quiet view is checked against MySQL once, not per poll
    assert [j["status"] for j in live] == ["RUNNING"] * 3
    assert live_mysql == []
    assert first["status"] == second["status"] == "RUNNING"
    assert len(first_mysql) == 1 and first_mysql[0].lstrip().upper().startswith("SELECT")
    assert second_mysql == []


def test_get_of_a_job_queued_for_a_minute_reads_no_mysql(api, rt, io_counts):
    # Given a job waiting in a backlog for a minute (no worker has it: its view is the submit's)
    job_id = api.submit("probe", {"tag": "queued", "steps": 2}).json["jobId"]
    job = rt.store.get_job(job_id)
    job.updated_at = utcnow() - timedelta(seconds=60)
    rt.hot.write(job.snapshot(), seq=1)
    api.get(job_id)  # warm connections
    io_counts.reset()

    # When a client polls it
    reply = api.get(job_id)

    # Then the answer is the hot PENDING view, from one Redis round trip and no MySQL
    assert reply.json["status"] == "PENDING"
    assert io_counts.redis_round_trips == 1 and io_counts.mysql_statements == []


# --- finding 5: an evicted checkpoint -------------------------------------------------------------
def _evict_checkpoint(client, rt: Runtime, job_id: str) -> None:
    """What volatile-lru may do to the checkpoint alone: it goes, the job's view stays."""
    client.hdel(rt.hot.job_key(job_id), hotstate.CHECKPOINT_FIELD)


def test_a_checkpoint_evicted_before_a_takeover_resumes_from_mysql_and_completes_right(
    api, events, sqs, settings, redis_client, mysql
):
    # Given a job crashed mid-run, its checkpoint in Redis only
    rt = _use(settings, lease_seconds=1)
    job_id = api.submit("probe", {"tag": "evicted", "steps": 12, "crashAtStep": 9}).json["jobId"]
    messages = events.receive()
    with pytest.raises(SimulatedCrash):
        events.invoke(messages)  # chunks 1-8 checkpointed in Redis only; the process dies in chunk 9
    assert api.get(job_id).json["progress"] == 66

    # When the checkpoint is evicted and the job taken over once the lease has expired
    _evict_checkpoint(redis_client, rt, job_id)
    wait_until(lambda: not redis_client.exists(rt.hot.lease_key(job_id)), timeout=3)
    sqs.change_message_visibility(
        QueueUrl=settings.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    events.drain()

    # Then the takeover resumed from MySQL's start (nothing durable yet) and completed with the right result
    job = api.get(job_id).json
    assert job["status"] == "COMPLETED"
    assert {k: job["result"][k] for k in ("done", "sum")} == {"done": 12, "sum": 78}
    assert Probe.started["evicted"] == list(range(1, 10)) + list(range(1, 13))


def test_a_checkpoint_evicted_mid_run_does_not_stop_the_job(api, events, settings, redis_client):
    # Given a running job
    rt = _use(settings)
    job_id = api.submit("probe", {"tag": "evicted-live", "steps": 20, "stepMs": 20}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(job_id).json["progress"] >= 30)

    # When its checkpoint is evicted while the worker runs it
    _evict_checkpoint(redis_client, rt, job_id)
    worker.join(30)

    # Then the job completes with the right result, each chunk once
    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == {"done": 20, "sum": 210}
    assert Probe.started["evicted-live"] == list(range(1, 21))


def test_a_duplicate_just_after_redis_lost_everything_does_not_take_a_live_job_over(
    api, events, sqs, settings, own_redis, mysql
):
    # Given a job whose worker is inside chunk 3 when Redis loses everything (its lease too)
    url, _ = own_redis
    _use(settings, redis_url=url)
    job_id = api.submit("probe", {"tag": "steal", "steps": 6, "stepMs": 10, "gateAtStep": 3}).json["jobId"]
    Probe.gates["steal"] = gate = threading.Event()
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: Probe.started.get("steal") == [1, 2, 3])
    redis.Redis.from_url(url).flushall()

    # When a duplicate of its message is delivered meanwhile, and then the chunk ends
    sqs.send_message(QueueUrl=settings.jobs_queue_url, MessageBody=f'{{"jobId": "{job_id}"}}')
    assert events.poll_once() == 1
    gate.set()
    worker.join(30)
    job = poll_until_finished(events, api, job_id)

    # Then the live worker kept the job: each chunk ran once, no takeover counted
    assert job["status"] == "COMPLETED" and {k: job["result"][k] for k in ("done", "sum")} == {"done": 6, "sum": 21}
    assert Probe.started["steal"] == [1, 2, 3, 4, 5, 6]
    assert _row(mysql, job_id)["deaths"] == 0


def test_a_write_sent_again_after_a_lost_reply_is_taken_and_an_older_one_is_not(api, rt, redis_client):
    # Given a job a worker holds, whose checkpoint 7 reached Redis but whose reply was lost
    job_id = api.submit("probe", {"tag": "again", "steps": 3}).json["jobId"]
    job = rt.store.get_job(job_id).snapshot()
    assert rt.hot.acquire(job_id, "holder", lease_seconds=30).held
    assert rt.hot.write(job, seq=7, checkpoint={"n": 7}, lease="holder", lease_seconds=30).written

    # When the same holder sends the same write again (redis-py re-sends after a timeout), and
    # another token or no token sends seq 7 too
    again = rt.hot.write(job, seq=7, checkpoint={"n": 7}, lease="holder", lease_seconds=30)
    other = rt.hot.write(job, seq=7, checkpoint={"n": 0}, lease="someone-else", lease_seconds=30)
    anonymous = rt.hot.write(job, seq=7, checkpoint={"n": 0})

    # Then only the holder's repeat is taken: it is not an older writer, the others are refused
    assert again.written and not again.lease_lost
    assert not other.written and other.lease_lost
    assert not anonymous.written
    stored = redis_client.hget(rt.hot.job_key(job_id), hotstate.CHECKPOINT_FIELD)
    assert stored == '{"n":7}'


def test_a_chunks_view_reads_back_as_the_snapshot_it_stands_for(api, rt):
    # Given a running job whose view a run encodes for each chunk (its fixed fields once)
    job_id = api.submit("sleep", {"steps": 3}).json["jobId"]
    job = rt.store.get_job(job_id)
    job.status, job.started_at, job.attempts = JobStatus.RUNNING, utcnow(), 1
    view = hotstate.RunningView()
    for done, attempts in ((1, 1), (2, 1), (2, 2)):
        # When a chunk moves the progress (and, the last time, a retry the attempts and the error)
        job.progress, job.progress_detail, job.message = done * 33, {"done": done, "total": 3}, f"step {done}"
        job.attempts, job.error = attempts, "Boom: again" if attempts > 1 else None
        job.eta_seconds, job.updated_at = 3 - done, utcnow()
        # Then its text decodes to the very snapshot the whole encoding gives
        assert hotstate.decode(view.encode(job)) == hotstate.decode(hotstate.encode(job.snapshot()))


def test_a_chunks_write_loads_its_script_again_after_a_flush_and_reconnects_after_a_drop(
    api, settings, private_redis, io_counts
):
    # Given a worker's hot state on a Redis of this test, whose lease it holds
    runtime = Runtime(replace(settings, redis_url=private_redis))
    job_id = api.submit("sleep", {"steps": 3}).json["jobId"]
    job = runtime.store.get_job(job_id)
    job.status = JobStatus.RUNNING
    assert runtime.hot.acquire(job_id, "holder", lease_seconds=30).held
    view, server = hotstate.RunningView(), redis.Redis.from_url(private_redis, decode_responses=True)

    def write(seq):
        return runtime.hot.write_chunk(
            job, view, seq=seq, checkpoint=f'{{"seq":{seq}}}', lease="holder", lease_seconds=30
        )

    assert write(1).written
    io_counts.reset()
    assert write(2).written and io_counts.redis_round_trips == 1  # one round trip per chunk
    # When the server forgets its scripts (a restart), and then drops the worker's connection
    server.script_flush()
    third = write(3)
    server.execute_command("CLIENT", "KILL", "TYPE", "normal")  # a server of this test alone
    fourth = write(4)

    # Then each write still lands, in order, with its checkpoint
    assert third.written and fourth.written and not fourth.lease_lost
    assert server.hget(runtime.hot.job_key(job_id), hotstate.CHECKPOINT_FIELD) == '{"seq":4}'
    assert hotstate.decode(server.hget(runtime.hot.job_key(job_id), "job")).status is JobStatus.RUNNING
