"""Ending a job: the worker, the sweeper and a pending cancel share one order and one Redis-down rule
(MySQL is final, nothing raised, a later GET repairs Redis from MySQL)."""

from dataclasses import replace

from chalicelib import hotstate
from chalicelib import runtime as runtime_module
from chalicelib.errors import HotStateUnavailable
from chalicelib.hotstate import FINAL_SEQ
from chalicelib.models import JobStatus
from chalicelib.runtime import Runtime


def _row(mysql, job_id):
    with mysql.cursor() as cur:
        cur.execute("SELECT status, error, message FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def _final_writes_fail(runtime: Runtime) -> None:
    """Redis refuses every final write (as if it went down at the end) and serves everything else."""
    write = runtime.hot.write

    def refusing(job, **kwargs):
        if kwargs["seq"] >= FINAL_SEQ:
            raise HotStateUnavailable("Redis: connection reset (injected)")
        return write(job, **kwargs)

    runtime.hot.write = refusing


def _hot_status(redis_client, rt, job_id):
    return hotstate.decode(redis_client.hget(rt.hot.job_key(job_id), "job")).status.value


def test_a_final_write_that_misses_redis_stands_in_mysql_and_a_later_get_repairs_redis(
    api, events, settings, mysql, redis_client
):
    runtime = Runtime(replace(settings, stall_after_seconds=0))
    runtime_module.use(runtime)
    job_id = api.submit("sleep", {"steps": 2, "stepMs": 0}).json["jobId"]
    _final_writes_fail(runtime)
    messages = events.receive()

    failed = events.invoke(messages)

    assert failed == []  # the end stands: the record is not sent back
    assert _row(mysql, job_id)["status"] == "COMPLETED"
    assert _hot_status(redis_client, runtime, job_id) == "RUNNING"  # the last active view
    runtime_module.use(Runtime(replace(settings, stall_after_seconds=0)))  # Redis answers again
    job = api.get(job_id).json  # the view reads stalled: MySQL is asked, and Redis repaired
    assert job["status"] == "COMPLETED" and job["result"] == {"steps": 2, "sleptMs": 0}
    assert _hot_status(redis_client, runtime, job_id) == "COMPLETED"


def test_the_sweeper_times_a_job_out_in_mysql_when_redis_refuses_the_final_write(api, rt, mysql):
    job_id = api.submit("probe", {"tag": "timeout-no-redis", "steps": 2}, timeoutSeconds=60).json["jobId"]
    with mysql.cursor() as cur:
        cur.execute(
            "UPDATE jobs SET status = 'RUNNING', started_at = NOW(3) - INTERVAL 61 SECOND WHERE id = %s", (job_id,)
        )
    _final_writes_fail(rt)

    report = rt.sweeper.sweep()

    assert report.timed_out == 1
    assert _row(mysql, job_id) == {
        "status": "FAILED",
        "error": "timed out: ran longer than timeoutSeconds (60)",
        "message": None,
    }


def test_a_pending_cancel_stands_in_mysql_when_redis_refuses_the_final_write(api, rt, mysql):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    _final_writes_fail(rt)

    reply = api.cancel(job_id)

    assert reply.status == 200 and reply.json["status"] == "CANCELLED"
    assert _row(mysql, job_id)["status"] == "CANCELLED"
    assert _row(mysql, job_id)["message"] == "cancelled before it started"


def test_a_stalled_hot_view_is_still_served_when_mysql_is_down_too(api, settings, redis_client):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    key = runtime_module.get().hot.job_key(job_id)
    hot = hotstate.decode(redis_client.hget(key, "job"))
    redis_client.hset(key, "job", hotstate.encode(replace(hot, status=JobStatus.RUNNING)))
    runtime_module.use(Runtime(replace(settings, stall_after_seconds=0, mysql_url="mysql://root@127.0.0.1:1/jobs")))

    reply = api.get(job_id)

    assert reply.status == 200
    assert reply.json["status"] == "RUNNING" and reply.json["stalled"] is True
