"""The local runtime (`make run`) as a user meets it: a process driven over HTTP only, and the CLI."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from chalicelib.store import connect_args
from local import services
from tests.conftest import wait_until
from tests.support.runtime import ALICE, BOB, DEMO, REAL_PLANS, ROOT, LocalRuntime, call, wait_for


@pytest.fixture(scope="module")
def runtime_redis(tmp_path_factory):
    """The runtime's Redis: a private server, so a test can stop and restart it."""
    directory = tmp_path_factory.mktemp("runtime-redis")
    holder = {}
    holder["proc"], holder["port"] = services.start_redis(directory)
    holder["restart"] = lambda: holder.update(proc=services.start_redis(directory, port=holder["port"])[0])
    yield holder
    services.stop(holder["proc"])


@pytest.fixture(scope="module")
def local_runtime(tmp_path_factory, run_settings, runtime_redis):
    rt = LocalRuntime(
        tmp_path_factory.mktemp("runtime"),
        run_settings,
        env={"REDIS_URL": f"redis://127.0.0.1:{runtime_redis['port']}/0"},
        args=["--visibility-timeout", "2", "--function-timeout", "30"],
    )
    yield rt
    rt.stop()


def test_a_submitted_job_completes_through_the_emulated_event_source(local_runtime):
    code, job = call(local_runtime.url, "POST", body={"type": "sleep", "payload": {"steps": 3, "stepMs": 50}})
    assert code == 202
    done = wait_for(local_runtime.url, job["jobId"], "COMPLETED")
    assert done["result"] == {"steps": 3, "sleptMs": 150}


def test_the_local_runtime_delivers_a_signed_webhook_to_a_loopback_receiver(local_runtime):
    from jobs_client import Client, verify_webhook

    from tests.support.webhooks import Receiver

    receiver = Receiver()
    client = Client(local_runtime.url, ALICE)
    try:
        job = client.submit("sleep", {"steps": 1, "stepMs": 0}, callback_url=receiver.url).raw
        secret = client.webhook_secret()
        deadline = time.monotonic() + 30
        while not receiver.got and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more comes
    finally:
        receiver.close()

    assert len(receiver.got) == 1
    delivered = verify_webhook(receiver.got[0].headers, receiver.got[0].body, secret)
    assert (delivered["type"], delivered["data"]["jobId"]) == ("job.completed", job["jobId"])
    [made] = client.deliveries(job["jobId"])
    assert (made.attempt, made.status_code, made.delivered, made.next_retry_at) == (1, 200, True, None)
    assert f"{secret}   (client alice)" in local_runtime.log.read_text()  # `make run` printed it
    status = _cli(local_runtime, "status", job["jobId"])
    assert status.returncode == 0, status.stderr
    assert "webhook deliveries:" in status.stdout
    assert re.search(r"#1 +\S+ \S+  200  delivered", status.stdout), status.stdout
    assert _cli(local_runtime, "webhook-secret").stdout.strip() == secret


def test_a_high_job_runs_on_its_own_pollers_while_every_normal_one_is_busy(local_runtime):
    # The two normal invocations (--concurrency 2) each hold a long job, a third normal job waits
    # behind them; the high job has the high-priority queue's own poller, so it runs at once.
    def submit(priority: str, steps: int) -> str:
        body = {"type": "sleep", "payload": {"steps": steps, "stepMs": 50}, "priority": priority}
        code, job = call(local_runtime.url, "POST", body=body)
        assert code == 202 and job["priority"] == priority
        return job["jobId"]

    busy = []
    for _ in range(2):  # one at a time: each is taken by a poller of its own
        busy.append(submit("normal", 400))
        wait_for(local_runtime.url, busy[-1], "RUNNING")
    waiting = submit("normal", 1)
    high = submit("high", 1)
    try:
        done = wait_for(local_runtime.url, high, "COMPLETED", timeout=10)
        assert done["priority"] == "high"
        assert call(local_runtime.url, path=f"/jobs/{waiting}")[1]["status"] == "PENDING"  # still behind the backlog
        assert [call(local_runtime.url, path=f"/jobs/{job_id}")[1]["status"] for job_id in busy] == ["RUNNING"] * 2
    finally:
        for job_id in busy:
            call(local_runtime.url, "DELETE", f"/jobs/{job_id}")
    assert "high:     queue " in local_runtime.log.read_text()  # `make run` names the high-priority queue


def test_a_running_job_is_cancelled(local_runtime):
    _, job = call(local_runtime.url, "POST", body={"type": "sleep", "payload": {"steps": 100, "stepMs": 50}})
    wait_for(local_runtime.url, job["jobId"], "RUNNING")
    code, _ = call(local_runtime.url, "DELETE", f"/jobs/{job['jobId']}")
    assert code == 202
    assert wait_for(local_runtime.url, job["jobId"], "CANCELLED")["progress"] < 100


def test_the_gateway_answers_403_without_a_key_or_with_an_unknown_one(local_runtime):
    assert call(local_runtime.url, key=None) == (403, {"message": "Forbidden"})
    assert call(local_runtime.url, key="no-such-key") == (403, {"message": "Forbidden"})
    assert call(local_runtime.url, path="/health", key=None)[0] == 200  # needs no key


def test_keys_scope_jobs_to_their_client(local_runtime):
    _, job = call(local_runtime.url, "POST", body={"type": "sleep", "payload": {"steps": 1}}, key=ALICE)
    assert call(local_runtime.url, path=f"/jobs/{job['jobId']}", key=BOB)[0] == 404


def test_429_once_the_burst_is_spent_and_again_200_after_the_refill(local_runtime):
    codes = [call(local_runtime.url, key="tight-local-key")[0] for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert call(local_runtime.url, key="tight-local-key") == (429, {"message": "Too Many Requests"})
    time.sleep(2.1)  # a token every 2 s: one is back
    assert call(local_runtime.url, key="tight-local-key")[0] == 200


def test_429_once_the_quota_is_used_up(local_runtime):
    codes = [call(local_runtime.url, key="counted-local-key")[0] for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert call(local_runtime.url, key="counted-local-key") == (429, {"message": "Limit Exceeded"})


def test_a_record_that_failed_is_delivered_again_and_the_job_completes(local_runtime, runtime_redis):
    services.stop(runtime_redis["proc"])  # the worker cannot take the job's lease: it reports the record failed
    try:
        code, job = call(local_runtime.url, "POST", body={"type": "sleep", "payload": {"steps": 2, "stepMs": 10}})
        assert code == 202  # Redis is only a cache for the API: the job is stored and queued
        _wait_for_log(
            local_runtime,
            lambda r: r.get("job_id") == job["jobId"] and "SQS will deliver it again" in r.get("message", ""),
        )
        assert call(local_runtime.url, path=f"/jobs/{job['jobId']}")[1]["status"] == "PENDING"
    finally:
        runtime_redis["restart"]()
    assert wait_for(local_runtime.url, job["jobId"], "COMPLETED")["result"] == {"steps": 2, "sleptMs": 20}


def test_sigterm_stops_everything_within_5_seconds_and_leaves_no_child(tmp_path, run_settings):
    # Nothing at these addresses: the runtime starts private MariaDB and Redis as well as moto.
    rt = LocalRuntime(
        tmp_path, run_settings, env={"MYSQL_URL": "mysql://root@127.0.0.1:1/jobs", "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    children = rt.children()
    assert len(children) == 3  # mariadbd, redis-server, moto

    started = time.monotonic()
    rt.proc.send_signal(signal.SIGTERM)
    rt.proc.wait(timeout=10)

    assert time.monotonic() - started < 5
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"left behind: {alive}"


def test_cli_submit_wait_prints_the_result_and_exits_0(local_runtime):
    result = _cli(local_runtime, "submit", "sleep", "--payload", '{"steps": 3, "stepMs": 20}', "--wait")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"steps": 3, "sleptMs": 60}
    assert "100%" in result.stderr and "COMPLETED" in result.stderr


def test_cli_submit_delay_schedules_the_job_and_the_local_runtime_starts_it_then(local_runtime):
    submitted = _cli(local_runtime, "submit", "sleep", "--payload", '{"steps": 1, "stepMs": 0}', "--delay", "2")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "SCHEDULED" and job["runAt"] is not None

    def finished():
        view = json.loads(_cli(local_runtime, "status", job["jobId"]).stdout)
        return view if view["status"] == "COMPLETED" else None

    done = wait_until(finished, timeout=30, interval=0.5)
    assert done["startedAt"] >= job["runAt"]  # the same ISO format: text order is time order


def test_cli_submit_priority_high_puts_the_job_on_the_high_priority_queue(local_runtime):
    submitted = _cli(local_runtime, "submit", "sleep", "--payload", '{"steps": 1, "stepMs": 0}', "--priority", "high")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["priority"] == "high"
    assert wait_for(local_runtime.url, job["jobId"], "COMPLETED")["priority"] == "high"
    refused = _cli(local_runtime, "submit", "sleep", "--priority", "urgent")
    assert refused.returncode == 2 and "invalid choice: 'urgent'" in refused.stderr


def test_cli_submit_wait_on_a_failing_job_exits_non_zero(local_runtime):
    payload = '{"steps": 3, "stepMs": 20, "failAtStep": 2}'
    result = _cli(local_runtime, "submit", "sleep", "--payload", payload, "--wait")
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "failed at step 2" in result.stderr


def test_cli_retry_runs_a_failed_job_again_and_cancel_by_filter_counts(local_runtime):
    payload = '{"steps": 3, "stepMs": 20, "failAtStep": 2}'
    failed = json.loads(_cli(local_runtime, "submit", "sleep", "--payload", payload, "--max-attempts", "1").stdout)
    wait_until(lambda: json.loads(_cli(local_runtime, "status", failed["jobId"]).stdout)["status"] == "FAILED")

    retried = _cli(local_runtime, "retry", failed["jobId"], "--from-start", "--wait")
    scheduled = [_cli(local_runtime, "submit", "sleep", "--delay", "600").stdout for _ in range(2)]
    cancelled = _cli(local_runtime, "cancel", "--status", "SCHEDULED", "--type", "sleep")

    assert retried.returncode == 1 and "FAILED" in retried.stderr  # the payload fails at step 2 again
    view = json.loads(_cli(local_runtime, "status", failed["jobId"]).stdout)
    assert view["previousError"] == view["error"] and "failed at step 2" in view["error"]
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, "cancelled 2 jobs")
    assert {
        json.loads(_cli(local_runtime, "status", json.loads(job)["jobId"]).stdout)["status"] for job in scheduled
    } == {"CANCELLED"}
    refused = _cli(local_runtime, "cancel")
    assert refused.returncode == 1 and "give a job id, or --status" in refused.stderr


def test_cli_prints_the_api_error_and_exits_non_zero(local_runtime):
    result = _cli(local_runtime, "status", "not-an-id")
    assert result.returncode == 1
    assert "400" in result.stderr and "InvalidJobId" in result.stderr
    assert _cli(local_runtime, "--key", "wrong", "list").stderr.strip() == "jobs: 403: Forbidden"


def test_cli_upload_prints_a_key_under_the_clients_prefix(local_runtime, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"to be or not to be\n")

    result = _cli(local_runtime, "upload", str(path))

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("inputs/alice/") and key.endswith("-notes.txt")
    code, job = call(
        local_runtime.url, "POST", body={"type": "word-frequency", "payload": {"bucket": "jobs-local", "key": key}}
    )
    assert code == 202
    assert wait_for(local_runtime.url, job["jobId"], "COMPLETED")["result"]["totalWords"] == 6


def test_cli_submit_input_uploads_then_runs_the_job_on_the_file(local_runtime, tmp_path):
    path = tmp_path / "figures.csv"
    path.write_bytes(b"a,b\n1,2\n3,4\n")

    result = _cli(local_runtime, "submit", "csv-stats", "--input", str(path), "--wait")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["columns"]["b"] == {"count": 2, "sum": 6.0, "min": 2.0, "max": 4.0, "mean": 3.0}
    assert "uploaded" in result.stderr and "inputs/alice/" in result.stderr


def test_cli_limits_names_the_client_behind_the_key_and_its_plan(local_runtime):
    result = _cli(local_runtime, "limits")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"client alice, plan roomy: \d+ of 1000 unfinished jobs \(\d+ pending, \d+ running\);"
        r" at most 100 running at once; timeoutSeconds up to 604800\n",
        result.stdout,
    ), result.stdout


def test_cli_upload_of_a_missing_file_says_so(local_runtime, tmp_path):
    result = _cli(local_runtime, "upload", str(tmp_path / "nope.csv"))

    assert result.returncode == 1 and "No such file" in result.stderr


def _cli(rt, *args, key=ALICE):
    return subprocess.run(
        [sys.executable, "-m", "local.cli", "--url", rt.url, "--key", key, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_demo_shows_each_outcome(local_runtime):
    result = _cli(local_runtime, "demo")
    assert result.returncode == 0, result.stderr
    rows = _demo_rows(result.stdout)
    assert sorted(row[2] for row in rows) == ["CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    assert next(row for row in rows if row[1] == "csv-stats")[2] == "COMPLETED"
    csv_result = json.loads(
        next(line for line in result.stdout.splitlines() if " result: " in line and '"columns"' in line).split(
            " result: ", 1
        )[1]
    )
    assert csv_result["rows"] == 50_000 and csv_result["columns"]["units"]["count"] == 50_000


def _demo_rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line[:2] == "01" and " result: " not in line]


def test_cli_demo_with_the_demo_key_under_the_real_basic_plan_exits_0(tmp_path, run_settings):
    # The plans `make run` uses: the demo client on `basic`, 5 requests a second, a burst of 10.
    rt = LocalRuntime(tmp_path, run_settings, env={}, plans=REAL_PLANS)
    try:
        result = _cli(rt, "demo", key=DEMO)
    finally:
        rt.stop()

    assert result.returncode == 0, result.stderr
    assert sorted(row[2] for row in _demo_rows(result.stdout)) == [
        "CANCELLED",
        "COMPLETED",
        "COMPLETED",
        "COMPLETED",
        "FAILED",
    ]


def test_cli_list_pages_past_100_shows_whole_type_names_and_watch_counts_by_status(local_runtime, tmp_path):
    # Given 105 jobs of bob's (no other test gives bob jobs), one with a type name of 14 characters
    from jobs_client import Client

    text = tmp_path / "words.txt"
    text.write_bytes(b"to be or not to be\n")
    with Client(local_runtime.url, BOB) as jobs:
        upload = jobs.upload(text)
        words = jobs.submit("word-frequency", {"bucket": upload.bucket, "key": upload.key})
        ids = [jobs.submit("sleep", {"steps": 1, "stepMs": 0}).id for _ in range(104)]
        jobs.wait_all([words, *ids])

    every = _cli(local_runtime, "list", "--all", key=BOB)
    three = _cli(local_runtime, "list", "--limit", "3", key=BOB)
    default = _cli(local_runtime, "list", key=BOB)
    watch = _cli(local_runtime, "watch", "--once", "--limit", "10", key=BOB)
    several = _cli(local_runtime, "status", ids[0], words.id, "01" + "A" * 24, key=BOB)

    assert every.returncode == 0, every.stderr
    rows = [line.split() for line in every.stdout.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == sorted([words.id, *ids])
    assert [row[1] for row in rows if row[0] == words.id] == ["word-frequency"]
    assert [row[0] for row in (line.split() for line in three.stdout.splitlines()[1:])] == list(reversed(ids))[:3]
    assert len(default.stdout.splitlines()) == 1 + 20
    assert watch.returncode == 0, watch.stderr
    assert "latest 10: 10 COMPLETED\n" in watch.stdout
    assert "unfinished in all: 0 (0 pending, 0 running)" in watch.stdout
    assert [line.split()[:3] for line in several.stdout.splitlines()[1:]] == [
        [ids[0], "sleep", "COMPLETED"],
        [words.id, "word-frequency", "COMPLETED"],
    ]  # newest first; the unknown id is simply not there


def test_the_dead_letter_handler_and_the_sweeper_run_in_the_local_runtime(tmp_path, run_settings):
    # No worker invocations: jobs stay PENDING, so only the sweeper and the DLQ handler act on them.
    rt = LocalRuntime(
        tmp_path,
        run_settings,
        env={"PENDING_LOST_SECONDS": "1"},
        args=["--concurrency", "0", "--sweep-interval", "1"],
    )
    try:
        _, poisoned = call(rt.url, "POST", body={"type": "sleep", "payload": {"steps": 1}})
        _, waiting = call(rt.url, "POST", body={"type": "sleep", "payload": {"steps": 1}})
        conn = pymysql.connect(**connect_args(run_settings.mysql_url))
        with conn, conn.cursor() as cur:  # its worker died in chunk 1, and so did the one that took it over
            cur.execute(
                "UPDATE jobs SET status = 'RUNNING', deaths = 1, death_chunk = 1 WHERE id = %s", (poisoned["jobId"],)
            )
        endpoint, queue_url = _aws_of(rt)
        sqs = services.sqs_client(endpoint)
        dlq = sqs.get_queue_url(QueueName=queue_url.rsplit("/", 1)[1] + "-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"jobId": poisoned["jobId"]}))
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"jobId": waiting["jobId"]}))  # an innocent one

        failed = wait_for(rt.url, poisoned["jobId"], "FAILED")
        sent_again = _wait_for_log(rt, lambda r: "no crash loop of its own, sent again" in r.get("message", ""))
        sweeps = _wait_for_log(rt, lambda r: r.get("message") == "sweep done" and r.get("lost_sent", 0) >= 1)
        still_waiting = call(rt.url, path=f"/jobs/{waiting['jobId']}")[1]
    finally:
        rt.stop()

    assert failed["error"].startswith("poison message after")
    assert waiting["jobId"] in sent_again["message"]  # the innocent job's dead letter was sent again...
    assert sweeps["lost_sent"] >= 1  # ...and the sweeper took its message for lost after PENDING_LOST_SECONDS...
    assert still_waiting["status"] == "PENDING"  # ...and, with no worker invocations, it waits on the queue


def _aws_of(rt) -> tuple[str, str]:
    line = next(line for line in rt.log.read_text().splitlines() if line.startswith("AWS:"))
    fields = line.split()
    return fields[1], fields[3]


def _wait_for_log(rt, matches, *, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in rt.log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if matches(record):
                    return record
        time.sleep(0.2)
    pytest.fail(f"no matching log line within {timeout}s:\n{rt.log.read_text()[-3000:]}")


def test_a_type_of_the_teams_own_runs_in_the_local_runtime(tmp_path, run_settings):
    # Given a module outside the framework, on the runtime's path and named in JOB_TYPES
    (tmp_path / "acme_greeting.py").write_text(
        "from chalicelib.jobs import JobType, Step\n\n"
        "class Greeting(JobType):\n"
        "    name = 'greeting'\n"
        "    def step(self, payload, state, ctx):\n"
        "        return Step(state=None, done=1, total=1, finished=True)\n"
        "    def finish(self, payload, state, ctx):\n"
        "        return {'hello': ctx.owner}\n"
    )
    env = {"JOB_TYPES": "acme_greeting", "PYTHONPATH": str(tmp_path)}
    (tmp_path / "rt").mkdir()
    rt = LocalRuntime(tmp_path / "rt", run_settings, env=env)
    try:
        # When a client submits a job of its type over HTTP
        code, job = call(rt.url, "POST", body={"type": "greeting", "payload": {}})
        # Then it completes with what its context told it
        assert code == 202
        assert wait_for(rt.url, job["jobId"], "COMPLETED")["result"] == {"hello": "alice"}
    finally:
        rt.stop()


def test_the_local_runtime_refuses_to_start_with_a_bad_job_types_module(tmp_path, run_settings):
    done = subprocess.run(
        [sys.executable, "-m", "local.run", "--port", str(services.free_port())],
        cwd=ROOT,
        env={**os.environ, "MYSQL_URL": run_settings.mysql_url, "JOB_TYPES": "acme_not_there"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "jobs: cannot start: JOB_TYPES: no module named 'acme_not_there'" in done.stderr
