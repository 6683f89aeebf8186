"""Owner-scoped inputs: a job reads only keys under `inputs/<owner>/`; any other key answers as a missing one."""

from dataclasses import replace

import pytest

from chalicelib import objects
from chalicelib.models import Job, JobStatus, new_job_id, utcnow
from chalicelib.objects import ObjectStore, input_prefix, owner_segment

TYPES = ["csv-stats", "word-frequency"]
CSV = b"a,b\n1,2\n3,4\n"


@pytest.fixture
def s3_calls(monkeypatch):
    """Every request ObjectStore sends to S3, by the key it names."""
    calls = []
    real = ObjectStore._call

    def counted(self, bucket, key, request):
        calls.append(key)
        return real(self, bucket, key, request)

    monkeypatch.setattr(ObjectStore, "_call", counted)
    return calls


@pytest.mark.parametrize("job_type", TYPES)
def test_another_owners_key_and_a_missing_key_give_identical_answers_at_submit(api, s3, bucket, s3_calls, job_type):
    # Given an object of key-b's, and names under key-b's and key-a's prefixes where nothing is
    s3.put_object(Bucket=bucket, Key="inputs/key-b/data.csv", Body=CSV)
    keys = {
        "another owner's, existing": "inputs/key-b/data.csv",
        "another owner's, missing": "inputs/key-b/nothing.csv",
        "own, missing": "inputs/key-a/nothing.csv",
        "outside every prefix": "data.csv",
        "a dot segment out of the prefix": "inputs/key-a/../key-b/data.csv",
    }

    # When key-a submits a job on each
    replies = {what: api.submit(job_type, {"bucket": bucket, "key": key}) for what, key in keys.items()}

    # Then every answer is the same 400, naming only the key that was sent
    for what, reply in replies.items():
        assert (reply.status, reply.json) == (
            400,
            {"code": "InvalidPayload", "message": f"input object not found: s3://{bucket}/{keys[what]}"},
        ), what
    # ...and S3 was asked about the caller's own key only: nothing can be learnt of another's
    assert s3_calls == ["inputs/key-a/nothing.csv"]
    assert api.request("GET", "/jobs").json["jobs"] == []


def test_an_owners_own_key_is_accepted_with_one_head_object(api, s3, bucket, s3_calls):
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=CSV)

    reply = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/data.csv"})

    assert reply.status == 202
    assert s3_calls == ["inputs/key-a/data.csv"]


@pytest.mark.parametrize("job_type", TYPES)
def test_a_row_naming_another_owners_key_fails_in_the_worker_as_a_missing_key_does(
    rt, api, events, s3, bucket, s3_calls, job_type
):
    # Given key-b's object, and two rows of key-a's put in MySQL and SQS past the API's check:
    # one naming key-b's object, one naming an own key that does not exist
    s3.put_object(Bucket=bucket, Key="inputs/key-b/data.csv", Body=CSV)
    foreign = _insert(rt, job_type, {"bucket": bucket, "key": "inputs/key-b/data.csv"})
    missing = _insert(rt, job_type, {"bucket": bucket, "key": "inputs/key-a/data.csv"})

    # When the worker runs them
    events.drain()

    # Then both fail permanently the same way, and key-b's object was never read
    views = {job_id: api.get(job_id).json for job_id in (foreign, missing)}
    for job_id, key in ((foreign, "inputs/key-b/data.csv"), (missing, "inputs/key-a/data.csv")):
        view = views[job_id]
        assert (view["status"], view["attempts"], view["result"]) == ("FAILED", 1, None)
        assert view["error"] == f"ObjectNotFound: input object not found: s3://{bucket}/{key}"
    assert "inputs/key-b/data.csv" not in s3_calls


def _insert(rt, job_type: str, payload: dict) -> str:
    now = utcnow()
    job = Job(
        id=new_job_id(),
        owner="key-a",
        type=job_type,
        status=JobStatus.PENDING,
        payload=payload,
        created_at=now,
        updated_at=now,
        max_attempts=3,
        timeout_seconds=600,
    )
    rt.store.insert_job(job)
    rt.queue.send_job(job.id)
    return job.id


def test_an_owner_with_a_slash_cannot_be_reached_through_a_shorter_owners_prefix(api, s3, bucket):
    # Owner ids are what http.owner allows: "/" among them (not on API Gateway, whose ids are alphanumeric).
    assert input_prefix("a/b") == "inputs/a%2Fb/"
    s3.put_object(Bucket=bucket, Key="inputs/a%2Fb/data.csv", Body=CSV)

    own = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/a%2Fb/data.csv"}, key="a/b")
    shorter = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/a%2Fb/data.csv"}, key="a")

    assert own.status == 202
    assert shorter.status == 400 and shorter.json["message"].startswith("input object not found")


@pytest.mark.parametrize(
    "owner, segment",
    [
        ("k2J8fQ9xZa", "k2J8fQ9xZa"),  # an API Gateway key id
        ("demo", "demo"),
        ("key-a_1", "key-a_1"),
        ("a/b", "a%2Fb"),
        ("a%2Fb", "a%252Fb"),  # "%" is always encoded: never the same segment as "a/b"
        ("..", "%2E%2E"),
        ("x.y~z", "x%2Ey%7Ez"),
    ],
)
def test_owner_segments_are_key_safe_and_distinct(owner, segment):
    assert owner_segment(owner) == segment


@pytest.mark.parametrize("job_type", TYPES)
def test_a_job_on_an_owners_own_key_completes(settings, api, events, s3, bucket, job_type):
    from chalicelib import runtime as runtime_module
    from chalicelib.runtime import Runtime

    runtime_module.use(Runtime(replace(settings, input_buckets=(bucket,))))
    s3.put_object(Bucket=bucket, Key="inputs/key-b/in/data.csv", Body=CSV)

    job_id = api.submit(job_type, {"bucket": bucket, "key": "inputs/key-b/in/data.csv"}, key="key-b").json["jobId"]
    events.drain()

    job = api.get(job_id, key="key-b").json
    assert job["status"] == "COMPLETED", job
    expected = (
        {"rows": 2, "bytes": len(CSV), "columns": {"a": _col(2, 4.0, 1, 3), "b": _col(2, 6.0, 2, 4)}, "nonNumeric": []}
        if job_type == "csv-stats"
        else {
            "words": [{"word": w, "count": 1} for w in ["1", "2", "3", "4", "a", "b"]],
            "distinctWords": 6,
            "totalWords": 6,
            "bytes": len(CSV),
        }
    )
    assert job["result"] == expected


def _col(count, total, low, high):
    return {"count": count, "sum": total, "min": float(low), "max": float(high), "mean": total / count}


def test_the_message_is_one_for_missing_and_foreign():
    assert objects.input_not_found("b", "k") == "input object not found: s3://b/k"
