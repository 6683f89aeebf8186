"""GET /jobs: the caller's jobs, newest first, keyset pagination, filters."""

import threading

import pytest

from tests.conftest import wait_until


def test_list_pages_through_the_callers_jobs_newest_first(api):
    ids = [api.submit("sleep", {"steps": 1}).json["jobId"] for _ in range(5)]
    api.submit("sleep", {"steps": 1}, key="key-b")

    first = api.request("GET", "/jobs?limit=2")
    second = api.request("GET", f"/jobs?limit=2&cursor={first.json['nextCursor']}")
    last = api.request("GET", f"/jobs?limit=2&cursor={second.json['nextCursor']}")

    assert first.status == 200
    seen = [j["jobId"] for page in (first, second, last) for j in page.json["jobs"]]
    assert seen == list(reversed(ids))
    assert last.json["nextCursor"] is None
    assert "result" not in first.json["jobs"][0]


def test_list_filters_by_status_and_type(api, events):
    done = api.submit("sleep", {"steps": 1, "stepMs": 0}).json["jobId"]
    events.drain()
    waiting = api.submit("probe", {"steps": 1, "tag": "list"}).json["jobId"]

    completed = api.request("GET", "/jobs?status=COMPLETED").json["jobs"]
    probes = api.request("GET", "/jobs?type=probe").json["jobs"]

    assert [j["jobId"] for j in completed] == [done]
    assert [j["jobId"] for j in probes] == [waiting]


def test_list_shows_live_progress_of_running_jobs(api, events):
    job_id = api.submit("probe", {"steps": 50, "stepMs": 20, "tag": "list-live"}).json["jobId"]
    worker = threading.Thread(target=events.drain)
    worker.start()
    wait_until(lambda: api.get(job_id).json["progress"] >= 4)

    listed = api.request("GET", "/jobs").json["jobs"][0]
    api.cancel(job_id)
    worker.join(30)

    assert listed["status"] == "RUNNING" and listed["progress"] >= 4


def test_an_empty_list(api):
    reply = api.request("GET", "/jobs")
    assert reply.status == 200
    assert reply.json == {"jobs": [], "nextCursor": None}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=ten",
        "limit=",
        "status=DONE",
        "status=",
        "type=nope",
        "type=",
        "cursor=not-ours",
        "cursor=MDFBQUFB",
        "cursor=",
        "stauts=RUNNING",
    ],
)
def test_bad_list_parameters_are_400(api, query):
    reply = api.request("GET", f"/jobs?{query}")
    assert reply.status == 400
    assert reply.json["code"] in ("InvalidRequest", "UnknownJobType")
