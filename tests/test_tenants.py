"""Tenants: the owner is the client behind a key, and its plan's job limits hold at submit.

Given the API over real MariaDB and Redis, with a tenants document in moto's S3 (as the deploy
writes it), when a client submits past its plan's maxActiveJobs it gets 429 ActiveJobLimit with
Retry-After, and is accepted again once a job finished; concurrent submissions never keep more than
the limit; a timeoutSeconds over the plan's is a 400 naming it; a rotated key sees and cancels the
jobs of the old one; a key no client has is refused; GET /limits shows the plan and the use.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest

from chalicelib import errors, http, tenants
from chalicelib import runtime as runtime_module
from chalicelib.runtime import Runtime
from chalicelib.tenants import Limits, Tenants
from tests.conftest import put_tenants


def _write(s3, bucket, clients: dict) -> str:
    return put_tenants(s3, bucket, tenants.document(clients))


@pytest.fixture
def tenanted(settings, s3, bucket, rt) -> Runtime:
    """acme (keys key-a and key-new: a rotation under way) on a plan of 3 unfinished jobs; other (key-b)."""
    url = _write(
        s3,
        bucket,
        {
            "acme": ("small", ["key-a", "key-new"], Limits(3, 1, 600)),
            "other": ("big", ["key-b"], Limits(100, 10, 86400)),
        },
    )
    runtime = Runtime(replace(settings, tenants_url=url))
    runtime_module.use(runtime)
    return runtime


def _count(mysql, owner: str) -> int:
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs WHERE owner = %s", (owner,))
        return cur.fetchone()["n"]


def test_over_max_active_jobs_is_a_429_with_retry_after_and_a_finished_job_makes_room(tenanted, api, events, mysql):
    accepted = [api.submit("sleep", {"steps": 1}) for _ in range(3)]
    refused = api.submit("sleep", {"steps": 1})

    assert [r.status for r in accepted] == [202, 202, 202]
    assert refused.status == 429 and refused.headers["retry-after"] == "5"
    assert refused.json["code"] == "ActiveJobLimit" and refused.json["maxActiveJobs"] == 3
    assert refused.json["message"] == (
        "plan small allows 3 unfinished jobs at once (maxActiveJobs); submit again when one has finished"
    )
    assert _count(mysql, "acme") == 3  # the refused one left no row, and no message
    assert api.submit("sleep", {"steps": 1}, key="key-b").status == 202  # another client is not affected

    events.drain()
    assert all(api.get(r.json["jobId"]).json["status"] == "COMPLETED" for r in accepted)
    assert api.submit("sleep", {"steps": 1}).status == 202


def test_concurrent_submissions_never_keep_more_than_the_limit(tenanted, api, mysql):
    statuses: list[int] = []
    start = threading.Barrier(8)

    def submit():
        start.wait()
        statuses.append(api.submit("sleep", {"steps": 1}).status)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(statuses)) in ([202, 429], [429])
    assert statuses.count(202) == _count(mysql, "acme") <= 3


def test_a_timeout_over_the_plans_is_a_400_naming_it_and_the_default_is_capped(tenanted, api):
    over = api.submit("sleep", {"steps": 1}, timeoutSeconds=601)
    default = api.submit("sleep", {"steps": 1})

    assert over.status == 400 and over.json["code"] == "InvalidRequest"
    assert over.json["message"] == "timeoutSeconds must be at most 600, the maxTimeoutSeconds of plan small"
    assert default.status == 202 and tenanted.store.get_job(default.json["jobId"]).timeout_seconds == 600
    assert api.submit("sleep", {"steps": 1}, key="key-b", timeoutSeconds=86400).status == 202


def test_a_rotated_key_sees_and_cancels_the_jobs_of_the_old_one(tenanted, api, mysql):
    job_id = api.submit("sleep", {"steps": 100}, key="key-a").json["jobId"]

    seen = api.get(job_id, key="key-new")
    listed = api.request("GET", "/jobs", key="key-new")
    cancelled = api.cancel(job_id, key="key-new")

    assert seen.status == 200 and [j["jobId"] for j in listed.json["jobs"]] == [job_id]
    assert cancelled.status == 200 and cancelled.json["status"] == "CANCELLED"
    assert api.get(job_id, key="key-b").status == 404  # another client's
    with mysql.cursor() as cur:
        cur.execute("SELECT owner FROM jobs WHERE id = %s", (job_id,))
        assert cur.fetchone()["owner"] == "acme"  # the client, not the key


def test_a_key_no_client_has_is_refused_and_a_new_one_works_as_soon_as_the_document_names_it(tenanted, api, s3, bucket):
    unknown = api.submit("sleep", {"steps": 1}, key="key-c")
    assert unknown.status == 403 and unknown.json["code"] == "Forbidden"
    assert unknown.json["message"] == "the API key is not one of this deployment's clients"

    _write(s3, bucket, {"acme": ("small", ["key-a"], Limits(3, 1, 600)), "third": ("big", ["key-c"], Limits(5, 1, 60))})
    tenanted.tenants._loaded_at -= tenants.UNKNOWN_KEY_RELOAD_SECONDS  # the reload's rate limit has passed

    assert api.submit("sleep", {"steps": 1}, key="key-c").status == 202


def test_limits_shows_the_plan_and_the_unfinished_jobs(tenanted, api, events):
    api.submit("sleep", {"steps": 1})
    api.submit("sleep", {"steps": 1})

    before = api.request("GET", "/limits")
    events.drain()
    after = api.request("GET", "/limits", key="key-new")

    assert before.status == 200 and before.headers["cache-control"] == "no-store"
    assert before.json == {
        "client": "acme",
        "plan": "small",
        "limits": {"maxActiveJobs": 3, "maxRunningJobs": 1, "maxTimeoutSeconds": 600, "maxSchedules": 20},
        "usage": {
            **{"activeJobs": 2, "scheduledJobs": 0, "waitingJobs": 0, "pendingJobs": 2, "runningJobs": 0},
            "heldJobs": 0,
        },
    }
    assert after.json["usage"] == {
        "activeJobs": 0,
        "scheduledJobs": 0,
        "waitingJobs": 0,
        "pendingJobs": 0,
        "runningJobs": 0,
        "heldJobs": 0,
    }


def test_without_tenants_the_key_is_the_owner_and_nothing_is_limited(api):
    reply = api.request("GET", "/limits", key="key-z")

    assert reply.status == 200 and reply.json["client"] == "key-z"
    assert reply.json["plan"] is None and reply.json["limits"] is None


def test_on_aws_the_header_cannot_stand_in_for_the_gateways_key_id():
    header_only = SimpleNamespace(context={"identity": {}}, headers={"x-api-key": "acme"})
    resolved = SimpleNamespace(context={"identity": {"apiKeyId": "k1"}}, headers={"x-api-key": "forged"})
    none = Tenants(None)

    with pytest.raises(errors.MissingApiKey):
        http.owner(header_only, none, on_aws=True)
    assert http.owner(resolved, none, on_aws=True) == "k1"
    assert http.owner(header_only, none, on_aws=False) == "acme"


def test_a_document_that_is_not_valid_is_a_503_naming_it(settings, s3, bucket, api):
    url = put_tenants(s3, bucket, b'{"clients": {"acme": {"plan": "x", "keyIds": []}}}')
    runtime_module.use(Runtime(replace(settings, tenants_url=url)))

    reply = api.submit("sleep", {"steps": 1})

    assert reply.status == 503 and reply.json["code"] == "ServiceMisconfigured"


@pytest.mark.parametrize("field, value", [("maxActiveJobs", -1), ("maxRunningJobs", 0), ("maxTimeoutSeconds", "1")])
def test_a_limit_below_one_or_not_a_number_is_refused_naming_the_client_and_field(field, value):
    raw = tenants.document({"acme": ("p", ["k"], Limits(1, 1, 1))})
    raw["clients"]["acme"]["limits"][field] = value

    with pytest.raises(errors.Misconfigured, match=f"clients/acme/limits/{field} must be an integer of at least 1"):
        tenants.parse(raw)


def test_a_delayed_submission_over_the_limit_leaves_no_row_either(tenanted, api, mysql):
    for _ in range(3):
        assert api.submit("sleep", {"steps": 1}, delaySeconds=3600).status == 202

    refused = api.submit("sleep", {"steps": 1}, delaySeconds=3600)

    assert refused.status == 429 and refused.json["code"] == "ActiveJobLimit"
    assert _count(mysql, "acme") == 3  # the refused SCHEDULED row was deleted like a PENDING one
