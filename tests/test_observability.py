"""Logs are JSON with request id, owner and job id; metrics are valid CloudWatch EMF; /health tells."""

import json
import subprocess
import uuid
from dataclasses import replace

import pytest

from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime

EMF_NAMESPACE = "Jobs"


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _emf_metrics(records):
    """name -> list of values, from every EMF document, checked against the EMF specification."""
    found = {}
    for record in records:
        if "_aws" not in record:
            continue
        meta = record["_aws"]
        assert isinstance(meta["Timestamp"], int)
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == EMF_NAMESPACE
            for dimension_set in directive["Dimensions"]:
                assert all(name in record for name in dimension_set)
            for metric in directive["Metrics"]:
                assert metric["Unit"] in ("Count", "Milliseconds")
                values = record[metric["Name"]]
                found.setdefault(metric["Name"], []).extend(values if isinstance(values, list) else [values])
    return found


def test_a_job_run_logs_json_lines_that_carry_the_job_id(api, events, log_output):
    job_id = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
    events.drain()

    records = _json_lines(log_output.getvalue())

    logs = [r for r in records if "message" in r]
    submitted = next(r for r in logs if r["message"] == "job submitted")
    assert submitted["job_id"] == job_id and submitted["owner"] == "key-a" and submitted["request_id"]
    worker_logs = [r for r in logs if r["message"] in ("job started", "job finished")]
    assert len(worker_logs) == 2
    assert all(r["job_id"] == job_id and r["service"] == "jobs" and r["request_id"] for r in worker_logs)


def test_the_metrics_of_a_run_are_emf_with_the_expected_names_and_counts(api, events, capsys):
    api.submit("sleep", {"steps": 3, "stepMs": 0})
    api.submit("sleep", {"steps": 2, "stepMs": 0, "failAtStep": 2}, maxAttempts=1)
    pending = api.submit("sleep", {"steps": 1}).json["jobId"]
    api.cancel(pending)
    events.drain()

    metrics = _emf_metrics(_json_lines(capsys.readouterr().out))

    assert sum(metrics["JobsSubmitted"]) == 3
    assert sum(metrics["JobsStarted"]) == 2
    assert sum(metrics["JobsCompleted"]) == 1
    assert sum(metrics["JobsFailed"]) == 1
    assert sum(metrics["JobsCancelled"]) == 1
    assert sum(metrics["Chunks"]) == 3 + 1  # every chunk that finished, not the one that raised
    assert len(metrics["ChunkTime"]) == 2  # one value per job run (the mean of its chunks), not per chunk
    assert len(metrics["JobDuration"]) == 2 and len(metrics["QueueWait"]) == 2
    assert all(value >= 0 for value in metrics["QueueWait"] + metrics["JobDuration"] + metrics["ChunkTime"])


def test_counters_are_summed_into_one_value_per_invocation(capsys):
    from chalicelib import observability

    for _ in range(3):
        observability.count("JobsStarted")
    observability.count("Chunks", 10)
    observability.count("Chunks", 5)
    observability.flush()

    metrics = _emf_metrics(_json_lines(capsys.readouterr().out))
    assert metrics["JobsStarted"] == [3] and metrics["Chunks"] == [15]


def test_health_is_200_when_every_dependency_answers(api):
    reply = api.request("GET", "/health", key=None)
    assert reply.status == 200
    assert reply.json == {"status": "ok", "checks": {"jobTypes": "ok", "mysql": "ok", "redis": "ok", "sqs": "ok"}}


def test_health_turns_503_while_redis_is_stopped_and_200_when_it_is_back(settings, private_redis, api):
    runtime_module.use(Runtime(replace(settings, redis_url=private_redis)))
    assert api.request("GET", "/health", key=None).status == 200
    port = private_redis.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)

    down = api.request("GET", "/health", key=None)

    assert down.status == 503
    assert down.json["checks"] == {"jobTypes": "ok", "mysql": "ok", "redis": "unavailable", "sqs": "ok"}
    assert down.json["code"] == "ServiceUnavailable" and "redis" in down.json["message"]
    assert down.headers["retry-after"]
    proc = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        back = _poll_health(api)
        assert back.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _poll_health(api):
    import time

    for _ in range(50):
        reply = api.request("GET", "/health", key=None)
        if reply.status == 200:
            return reply
        time.sleep(0.1)
    return reply


def test_health_names_mysql_and_sqs_when_they_are_down(settings, api):
    runtime_module.use(
        Runtime(
            replace(
                settings, mysql_url="mysql://root@127.0.0.1:1/jobs", jobs_queue_url=settings.jobs_queue_url + "-gone"
            )
        )
    )
    reply = api.request("GET", "/health", key=None)
    assert reply.status == 503
    assert reply.json["checks"] == {"jobTypes": "ok", "mysql": "unavailable", "redis": "ok", "sqs": "unavailable"}


def test_health_names_sqs_when_only_the_high_priority_queue_is_gone(settings, sqs, api):
    # A high-priority submission would find no queue: the health check asks both queues
    high = sqs.create_queue(QueueName=f"jobs-high-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    try:
        runtime_module.use(Runtime(replace(settings, jobs_high_queue_url=high)))
        assert api.request("GET", "/health", key=None).status == 200
    finally:
        sqs.delete_queue(QueueUrl=high)
    runtime_module.use(Runtime(replace(settings, jobs_high_queue_url=high)))

    reply = api.request("GET", "/health", key=None)

    assert reply.status == 503 and reply.json["message"] == "unavailable: sqs"
    assert reply.json["checks"] == {"jobTypes": "ok", "mysql": "ok", "redis": "ok", "sqs": "unavailable"}


def test_tracing_is_off_unless_switched_on_and_only_then_loads_the_xray_sdk():
    import os
    import sys
    from pathlib import Path

    pytest.importorskip("aws_xray_sdk")
    code = "import app, sys; app.runtime.get().service; print('aws_xray_sdk.core' in sys.modules)"

    def loaded(**env):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, **env},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert loaded(TRACING="off") == "False"  # ~250 ms of cold start saved
    assert loaded(TRACING="on") == "True"
