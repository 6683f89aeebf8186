"""Sizes the platform refuses, named for what they are: never read as an outage, never retried.

Given the worker over real MariaDB and Redis, when a job's state grows past the checkpoint ceiling
(MAX_STATE_BYTES), then it fails CheckpointTooLarge at the first chunk that exceeds it with both
sizes and a hint; when a result kept in the row (no RESULTS_BUCKET) is over MySQL's
max_allowed_packet, the job fails ResultTooLarge at once naming the limit (before, the server's
"gone away" read as MySQL down and the job waited for it until its timeout); a statement over the
limit is never sent, and the connection goes on serving.
"""

from __future__ import annotations

import pytest

from chalicelib import errors
from chalicelib.jobs import MAX_STATE_BYTES
from chalicelib.models import utcnow
from tests.support.probe import Probe

MB = 1_000_000


def _max_allowed_packet(mysql) -> int:
    with mysql.cursor() as cur:
        cur.execute("SELECT @@max_allowed_packet AS n")
        return cur.fetchone()["n"]


def _row(mysql, job_id: str) -> dict:
    with mysql.cursor() as cur:
        cur.execute("SELECT status, attempts, error, checkpoint FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def test_a_checkpoint_over_the_ceiling_fails_the_job_at_the_first_chunk_that_exceeds_it(
    api, events, mysql, redis_client, rt
):
    payload = {"steps": 6, "tag": "fat-state", "stateAtStep": 3, "stateBytes": MAX_STATE_BYTES}
    job_id = api.submit("probe", payload).json["jobId"]

    handled = events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1 and handled == 1  # no retry, no redelivery
    assert job["error"].startswith("CheckpointTooLarge: the state after chunk 3 is ")
    assert f"bytes of JSON, over the checkpoint ceiling of {MAX_STATE_BYTES} (MAX_STATE_BYTES)" in job["error"]
    assert "ctx.objects.put" in job["error"]
    assert Probe.started["fat-state"] == [1, 2, 3]
    assert job["progress"] == 50  # the chunk that grew the state ran; nothing after it
    assert _row(mysql, job_id)["checkpoint"] is None  # the oversized state reached neither store
    assert all(
        redis_client.memory_usage(key) < MAX_STATE_BYTES for key in rt.hot.keys_of(job_id) if redis_client.exists(key)
    )


def test_a_state_at_the_ceiling_is_kept_and_the_job_completes(api, events):
    # {"done":1,"sum":1,"pass":1,"pad":"..."} is 36 bytes of JSON besides the pad: exactly the ceiling.
    payload = {"steps": 3, "tag": "at-ceiling", "stateAtStep": 1, "stateBytes": MAX_STATE_BYTES - 36}
    job_id = api.submit("probe", payload).json["jobId"]

    events.drain()

    assert api.get(job_id).json["status"] == "COMPLETED"


def test_a_result_over_max_allowed_packet_in_the_row_fails_at_once_naming_the_limit(api, events, mysql, rt):
    assert rt.settings.results_bucket is None  # results are kept in the row
    limit = _max_allowed_packet(mysql)
    job_id = api.submit("probe", {"steps": 1, "tag": "huge-row", "resultBytes": limit + MB}).json["jobId"]

    handled = events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED" and job["attempts"] == 1 and handled == 1
    assert job["error"].startswith(f"ResultTooLarge: result is {limit + MB + 41} bytes: a statement of ")
    assert f"bytes is over MySQL's max_allowed_packet of {limit} (RESULTS_BUCKET keeps large" in job["error"]
    assert _row(mysql, job_id)["status"] == "FAILED"


@pytest.mark.parametrize("over", [10, 2 * MB], ids=["just-over", "far-over"])
def test_a_statement_over_the_limit_is_refused_unsent_and_the_connection_serves_on(api, rt, mysql, io_counts, over):
    job_id = api.submit("sleep", {"steps": 1}).json["jobId"]
    assert rt.store.start(job_id, token="t1", at=utcnow())
    limit = _max_allowed_packet(mysql)
    io_counts.reset()

    with pytest.raises(errors.ValueTooLarge) as refused:
        rt.store.save_checkpoint(
            job_id,
            fenced_by="t1",
            checkpoint={"blob": "x" * (limit + over)},
            checkpoint_seq=1,
            progress=1,
            progress_detail=None,
            message=None,
            at=utcnow(),
        )

    assert refused.value.limit == limit and refused.value.size > limit
    assert [s.split()[0] for s in io_counts.mysql_statements] == ["SELECT"]  # the limit read; the UPDATE not sent
    assert rt.store.get_job(job_id).status.value == "RUNNING"  # same connection, still serving
    assert _row(mysql, job_id)["checkpoint"] is None
