"""Connections are made once per container, reused across invocations, and survive being dropped."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import redis

from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]


def _server_connections(mysql, settings) -> set[int]:
    database = settings.mysql_url.rsplit("/", 1)[1]
    with mysql.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (database,)
        )
        return {row["ID"] for row in cur.fetchall()}


# Connections are told apart from those open before the test (the fixtures' own, or one an earlier
# test on the same worker has not closed yet): only the ones it opens are counted.


def test_mysql_connection_is_reused_across_invocations(api, mysql, settings, redis_client, rt):
    before = _server_connections(mysql, settings)
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    opened = _server_connections(mysql, settings) - before
    for _ in range(5):
        redis_client.delete(rt.hot.job_key(job_id))  # force the MySQL path
        assert api.get(job_id).status == 200
    assert len(opened) == 1
    assert _server_connections(mysql, settings) - before == opened


def test_a_dropped_mysql_connection_is_replaced_not_fatal(api, mysql, settings, redis_client, rt):
    before = _server_connections(mysql, settings)
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    (old,) = _server_connections(mysql, settings) - before
    with mysql.cursor() as cur:
        cur.execute(f"KILL {int(old)}")  # what a failover or an idle timeout does to a thawed container
    redis_client.delete(rt.hot.job_key(job_id))

    reply = api.get(job_id)

    assert reply.status == 200 and reply.json["status"] == "PENDING"
    (replacement,) = _server_connections(mysql, settings) - before
    assert replacement != old


def test_a_dropped_redis_connection_is_replaced_not_fatal(settings, private_redis, api, io_counts):
    runtime_module.use(Runtime(replace(settings, redis_url=private_redis)))
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    admin = redis.Redis.from_url(private_redis)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1

    io_counts.reset()
    reply = api.get(job_id)

    assert reply.status == 200 and reply.json["status"] == "PENDING"
    assert io_counts.mysql_statements == []  # answered from Redis after reconnecting


def test_importing_the_app_opens_no_connection():
    # Any socket connect during import fails the import.
    code = (
        "import socket\n"
        "def refuse(*args): raise AssertionError('connected at import')\n"
        "socket.socket.connect = refuse\n"
        "import app\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_api_does_not_import_boto3_until_it_sends():
    result = subprocess.run(
        [sys.executable, "-c", "import app, sys; print('boto3' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.stdout.strip() == "False", result.stderr
