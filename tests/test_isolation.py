"""Tenant isolation: on every route, a job of key A does not exist for key B."""

import pytest


@pytest.fixture
def jobs_of_a(api, events):
    finished = api.submit("sleep", {"steps": 1, "stepMs": 0}, key="key-a").json["jobId"]
    events.drain()
    pending = api.submit("sleep", {"steps": 1}, key="key-a").json["jobId"]
    return {"finished": finished, "pending": pending}


@pytest.mark.parametrize("which", ["finished", "pending"])
@pytest.mark.parametrize("from_redis", [True, False], ids=["hot", "mysql-fallback"])
def test_key_b_cannot_read_or_cancel_a_job_of_key_a(api, jobs_of_a, redis_client, rt, which, from_redis):
    job_id = jobs_of_a[which]
    if not from_redis:
        redis_client.delete(rt.hot.job_key(job_id))
    before = api.get(job_id, key="key-a").json

    read = api.get(job_id, key="key-b")
    cancel = api.cancel(job_id, key="key-b")

    assert (read.status, read.json["code"]) == (404, "JobNotFound")
    assert (cancel.status, cancel.json["code"]) == (404, "JobNotFound")
    assert api.get(job_id, key="key-a").json == before  # untouched


def test_key_b_lists_none_of_key_a_jobs(api, jobs_of_a):
    for query in ("", "?status=PENDING", "?status=COMPLETED", "?type=sleep", f"?cursor={'7' + 'Z' * 25}"):
        assert api.request("GET", f"/jobs{query}", key="key-b").json == {"jobs": [], "nextCursor": None}
    assert len(api.request("GET", "/jobs", key="key-a").json["jobs"]) == 2


@pytest.mark.parametrize("from_redis", [True, False], ids=["hot", "mysql-fallback"])
def test_key_b_polls_none_of_key_a_jobs_by_id(api, jobs_of_a, redis_client, rt, from_redis):
    ids = ",".join(jobs_of_a.values())
    if not from_redis:
        for job_id in jobs_of_a.values():
            redis_client.delete(rt.hot.job_key(job_id))

    theirs = api.request("GET", f"/jobs?ids={ids}", key="key-b")
    mine = api.request("GET", f"/jobs?ids={ids}", key="key-a")

    assert (theirs.status, theirs.json) == (200, {"jobs": [], "nextCursor": None})
    assert "retry-after" not in theirs.headers  # not even the pace of a job it cannot see
    assert sorted(job["jobId"] for job in mine.json["jobs"]) == sorted(jobs_of_a.values())


def test_key_b_cannot_take_over_an_idempotency_key_of_key_a(api):
    mine = api.submit("sleep", {"steps": 1}, key="key-a", headers={"Idempotency-Key": "k"}).json["jobId"]
    theirs = api.submit("sleep", {"steps": 1}, key="key-b", headers={"Idempotency-Key": "k"})
    assert theirs.status == 202 and theirs.json["jobId"] != mine


def test_key_b_limits_count_none_of_key_a_jobs(api, jobs_of_a):
    theirs = api.request("GET", "/limits", key="key-b").json["usage"]
    mine = api.request("GET", "/limits", key="key-a").json["usage"]

    nothing = {"scheduledJobs": 0, "waitingJobs": 0, "pendingJobs": 0, "runningJobs": 0, "heldJobs": 0}
    assert theirs == {"activeJobs": 0, **nothing}
    assert mine == {**nothing, "activeJobs": 1, "pendingJobs": 1}


@pytest.mark.parametrize("which", ["finished", "pending"])
def test_key_b_cannot_read_the_webhook_deliveries_of_a_job_of_key_a(api, jobs_of_a, which):
    job_id = jobs_of_a[which]

    theirs = api.request("GET", f"/jobs/{job_id}/deliveries", key="key-b")
    mine = api.request("GET", f"/jobs/{job_id}/deliveries", key="key-a")

    assert (theirs.status, theirs.json["code"]) == (404, "JobNotFound")
    assert (mine.status, mine.json) == (200, {"deliveries": []})  # no callbackUrl: no attempts


@pytest.mark.parametrize("from_redis", [True, False], ids=["hot", "mysql-fallback"])
def test_key_b_cannot_read_or_cancel_a_batch_of_key_a_nor_wait_on_its_jobs(api, redis_client, rt, from_redis):
    body = {"jobs": [{"type": "sleep", "payload": {"steps": 1}}] * 2, "then": {"type": "sleep"}}
    batch = api.request("POST", "/batches", key="key-a", body=body, headers={"Idempotency-Key": "b"}).json
    if not from_redis:
        redis_client.delete(rt.hot.batch_key(batch["batchId"]))
    before = api.request("GET", f"/batches/{batch['batchId']}", key="key-a").json

    read = api.request("GET", f"/batches/{batch['batchId']}", key="key-b")
    cancel = api.request("DELETE", f"/batches/{batch['batchId']}", key="key-b")
    unknown = api.request("GET", f"/batches/{'7' + 'Z' * 25}", key="key-b")
    waiter = api.submit("sleep", {"steps": 1}, key="key-b", dependsOn=[batch["jobIds"][0]])
    replay = api.request("POST", "/batches", key="key-b", body=body, headers={"Idempotency-Key": "b"})

    assert (read.status, read.json["code"]) == (unknown.status, unknown.json["code"]) == (404, "BatchNotFound")
    assert (cancel.status, cancel.json["code"]) == (404, "BatchNotFound")
    assert (waiter.status, waiter.json["message"]) == (400, f"dependsOn: no job {batch['jobIds'][0]}")
    assert replay.status == 202 and replay.json["batchId"] != batch["batchId"]  # its own key space
    assert api.request("GET", f"/batches/{batch['batchId']}", key="key-a").json == before  # untouched
