"""The Python client (client/, jobs_client) against the local runtime over HTTP: sync and asyncio,
and through the 429s of a tight usage plan."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys

import httpx
import pytest
from jobs_client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    JobStatus,
    NotFound,
)

from tests.support.runtime import ALICE, BOB, ROOT, LocalRuntime

#: Results above this many bytes go to S3, so `result()` meets both kinds (a sleep result is ~25 bytes).
INLINE_RESULT_BYTES = 100


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, run_settings):
    rt = LocalRuntime(
        tmp_path_factory.mktemp("client"), run_settings, env={"INLINE_RESULT_BYTES": str(INLINE_RESULT_BYTES)}
    )
    yield rt
    rt.stop()


class Recording(httpx.HTTPTransport):
    """httpx's own transport, noting the method, path and status of every request."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def handle_request(self, request):
        response = super().handle_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request):
        response = await super().handle_async_request(request)
        self.seen.append((request.method, request.url.path, response.status_code))
        return response


@pytest.fixture
def jobs(runtime):
    transport = Recording()
    with Client(runtime.url, ALICE, transport=transport) as client:
        client.transport = transport
        yield client


def test_submit_then_wait_reports_progress_and_ends_with_the_result(jobs):
    seen = []

    job = jobs.submit("sleep", {"steps": 4, "stepMs": 300})
    done = jobs.wait(job, on_progress=seen.append)

    assert job.status is JobStatus.PENDING and job.retry_after is not None
    assert done.status is JobStatus.COMPLETED and done.result == {"steps": 4, "sleptMs": 1200}
    progress = [view.progress for view in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert jobs.result(done) == {"steps": 4, "sleptMs": 1200}
    # Polls were paced by Retry-After (at least 1 s each over 1.2 s of work): a handful, not a busy loop.
    polls = [s for s in jobs.transport.seen if s[:2] == ("GET", f"/jobs/{job.id}")]
    assert 1 <= len(polls) <= 4


def test_get_many_list_and_cancel(jobs, runtime):
    ids = [jobs.submit("sleep", {"steps": 1, "stepMs": 0}).id for _ in range(5)]
    long = jobs.submit("sleep", {"steps": 300, "stepMs": 100})
    stranger = Client(runtime.url, "bob-local-key").submit("sleep", {"steps": 1}).id

    many = jobs.get_many([*ids, stranger, ids[0]])
    jobs.transport.seen.clear()
    listed = list(jobs.list(page_size=2, limit=6))
    pages = [s[:2] for s in jobs.transport.seen]
    cancelled = jobs.cancel(long)

    assert sorted(job.id for job in many) == sorted(ids)  # another client's id is simply absent
    assert [job.id for job in listed] == [long.id, *reversed(ids)]
    assert pages == [("GET", "/jobs")] * 3  # three pages of two
    assert cancelled.status is JobStatus.CANCELLED or cancelled.cancel_requested
    assert jobs.wait(long).status is JobStatus.CANCELLED


def test_retry_and_cancel_many_sync_and_async(jobs, runtime):
    scheduled = [jobs.submit("sleep", {"steps": 1}, delay_seconds=600) for _ in range(3)]
    cancelled = jobs.cancel(jobs.submit("sleep", {"steps": 2, "stepMs": 50}, delay_seconds=600))

    assert jobs.cancel_many(status="SCHEDULED", type="sleep") == 3
    assert {jobs.get(job).status for job in scheduled} == {JobStatus.CANCELLED}
    again = jobs.retry_job(cancelled)
    assert (again.status, again.attempts, again.previous_error) == (JobStatus.PENDING, 0, None)
    assert jobs.wait(again).status is JobStatus.COMPLETED
    with pytest.raises(Conflict) as refused:
        jobs.retry_job(again)
    assert refused.value.code == "JobNotRetryable" and refused.value.body["status"] == "COMPLETED"

    async def main():
        async with AsyncClient(runtime.url, ALICE) as client:
            waiting = await client.submit("sleep", {"steps": 1}, delay_seconds=600)
            count = await client.cancel_many(type="sleep")
            retried = await client.retry_job(waiting, from_start=True)
            return count, retried, await client.wait(retried)

    count, retried, done = asyncio.run(main())
    assert count == 1 and retried.status is JobStatus.PENDING and done.status is JobStatus.COMPLETED


def test_an_uploaded_csv_is_read_by_a_job_and_its_large_result_is_fetched_from_s3(jobs, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes(b"region,units\n" + b"".join(b"north,%d\n" % i for i in range(1, 101)))

    upload = jobs.upload(path)
    done = jobs.wait(jobs.submit("csv-stats", {"bucket": upload.bucket, "key": upload.key}))

    assert upload.key.startswith("inputs/alice/") and upload.key.endswith("-sales.csv")
    assert done.status is JobStatus.COMPLETED
    assert done.result is None and done.result_url and done.result_bytes > INLINE_RESULT_BYTES
    result = jobs.result(done)  # the API's 303 to a presigned URL, followed without the API key
    assert result["rows"] == 100 and result["columns"]["units"]["sum"] == 5050.0
    assert ("GET", f"/jobs/{done.id}/result", 303) in jobs.transport.seen


def test_errors_carry_the_apis_code_and_message(jobs, runtime):
    running = jobs.submit("sleep", {"steps": 50, "stepMs": 100})

    with pytest.raises(NotFound) as unknown:
        jobs.get("01" + "A" * 24)
    with pytest.raises(BadRequest) as bad_type:
        jobs.submit("no-such-type")
    with pytest.raises(Conflict) as not_done:
        jobs.result(running)
    with pytest.raises(Forbidden) as refused, Client(runtime.url, "not-a-key") as stranger:
        stranger.limits()
    jobs.cancel(running)

    assert (unknown.value.status, unknown.value.code) == (404, "JobNotFound")
    assert bad_type.value.code == "UnknownJobType" and "no-such-type" in bad_type.value.message
    assert not_done.value.code == "JobNotCompleted"
    assert (refused.value.status, refused.value.message) == (403, "Forbidden")


def test_limits_name_the_client_and_its_plan(jobs):
    limits = jobs.limits()
    assert (limits.client, limits.plan, limits.max_active_jobs) == ("alice", "roomy", 1000)


def test_the_async_client_does_the_same_over_http(runtime, tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes(b"to be or not to be\n")

    async def main():
        async with AsyncClient(runtime.url, ALICE) as jobs:
            quick = await asyncio.gather(*(jobs.submit("sleep", {"steps": 2, "stepMs": 100}) for _ in range(3)))
            seen = []

            async def progress(job):
                seen.append(job.progress)

            done = await jobs.wait(quick[0], on_progress=progress)
            finished = await jobs.wait_all(quick)
            many = await jobs.get_many(quick)
            listed = [job.id async for job in jobs.list(page_size=2, limit=3)]
            upload = await jobs.upload(path)
            words = await jobs.wait(await jobs.submit("word-frequency", {"bucket": upload.bucket, "key": upload.key}))
            return quick, done, seen, finished, many, listed, await jobs.result(words)

    quick, done, seen, finished, many, listed, words = asyncio.run(main())

    assert done.result == {"steps": 2, "sleptMs": 200} and seen[-1] == 100
    assert [job.status for job in finished] == [JobStatus.COMPLETED] * 3
    assert {job.id for job in many} == {job.id for job in quick}
    assert listed == sorted((job.id for job in quick), reverse=True)
    assert words["totalWords"] == 6


def test_through_the_429s_of_a_tight_plan_every_call_succeeds_sync_and_async(runtime):
    # The tight plan: a burst of 3, then a token every 2 s. Seven calls in a row are four over it.
    transport = Recording()
    with Client(runtime.url, "tight-local-key", transport=transport) as jobs:
        job = jobs.submit("sleep", {"steps": 1, "stepMs": 0})
        views = [jobs.get(job) for _ in range(4)]
        listed = list(jobs.list(limit=1))
        limits = jobs.limits()

    async def concurrently():
        recording = AsyncRecording()
        async with AsyncClient(runtime.url, "tight-local-key", transport=recording) as jobs:
            return await asyncio.gather(*(jobs.get(job.id) for _ in range(4))), recording.seen

    async_views, async_seen = asyncio.run(concurrently())

    for seen, answered in ((transport.seen, 7), (async_seen, 4)):
        statuses = [status for _, _, status in seen]
        # Each 429 was answered by sending the same request again, and every call got its answer.
        assert statuses.count(429) >= 1
        assert len(statuses) == answered + statuses.count(429)
        assert all(status in (200, 202, 429) for status in statuses)
    assert all(view.id == job.id for view in itertools.chain(views, async_views))
    assert listed[0].id == job.id and limits.client == "tight"


def test_the_server_never_imports_the_client():
    # The Lambda package is app.py, chalicelib/ and requirements.txt: the client must stay out of all three.
    probe = (
        "import sys, app, chalicelib.service, chalicelib.worker, chalicelib.sweeper; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jobs_client', 'httpx', 'standardwebhooks'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert "httpx" not in (ROOT / "requirements.txt").read_text()


def test_a_batch_with_a_then_and_a_dependent_job_sync_async_and_from_the_cli(jobs, runtime, tmp_path, capsys):
    from local import cli

    first = jobs.submit("sleep", {"steps": 5, "stepMs": 300})  # still running when the next is submitted
    after = jobs.submit("sleep", {"steps": 1, "stepMs": 0}, depends_on=[first])
    submitted = jobs.submit_batch(
        [{"type": "sleep", "payload": {"steps": 2, "stepMs": 50}}] * 3, then={"type": "sleep", "payload": {"steps": 1}}
    )
    seen = []
    batch = jobs.wait_batch(submitted.batch_id, on_progress=seen.append, timeout=60)

    assert after.status is JobStatus.WAITING and after.depends_on == [first.id]
    # Released by `first`'s final write, so it runs within moments; the bound is past the local
    # queue's 60 s visibility timeout, after which SQS brings back a record a transient error failed
    # (one CI run saw this job PENDING for 30 s; a failure now prints the runtime's log, conftest.py).
    assert jobs.wait(after, timeout=90).status is JobStatus.COMPLETED
    assert batch.status is JobStatus.COMPLETED and batch.counts["COMPLETED"] == 3 and batch.progress == 100
    assert batch.then_job_id == submitted.then_job_id and batch.then_status is JobStatus.COMPLETED
    assert [view.progress for view in seen] == sorted(view.progress for view in seen)
    assert jobs.get(submitted.job_ids[0]).batch_id == submitted.batch_id

    async def main():
        async with AsyncClient(runtime.url, ALICE) as client:
            made = await client.submit_batch([{"type": "sleep", "payload": {"steps": 1}}] * 2)
            return await client.wait_batch(made.batch_id, timeout=60)

    assert asyncio.run(main()).counts["COMPLETED"] == 2

    specs = tmp_path / "jobs.jsonl"
    specs.write_text('{"type": "sleep", "payload": {"steps": 1}}\n\n{"type": "sleep", "dependsOn": [0]}\n')
    code = cli.main(
        ["--url", runtime.url, "--key", ALICE, "batch", str(specs), "--then", '{"type": "sleep"}', "--wait"]
    )
    out = capsys.readouterr()
    assert code == 0 and json.loads(out.out)["status"] == "COMPLETED"
    assert "100%  COMPLETED  2 of 2 ended (2 completed)  then COMPLETED" in out.err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "nope"}\n')
    assert cli.main(["--url", runtime.url, "--key", ALICE, "batch", str(bad)]) == 1
    assert "400: InvalidRequest 1 of the batch's job specs are invalid" in capsys.readouterr().err


def test_schedules_from_the_client_and_the_cli_sync_and_async(jobs, runtime, capsys):
    from local import cli

    made = jobs.create_schedule("0 6 * * 1-5", {"type": "sleep", "payload": {"steps": 1}}, timezone="Europe/Berlin")
    paused = jobs.pause_schedule(made)
    resumed = jobs.resume_schedule(made.id)
    listed = [s.id for s in jobs.schedules(page_size=1)]
    with pytest.raises(BadRequest) as refused:
        jobs.create_schedule("* * * * * *", {"type": "sleep"})
    assert made.cron == "0 6 * * 1-5" and made.timezone == "Europe/Berlin" and made.next_run_at.hour in (4, 5)
    assert paused.paused and paused.next_run_at is None
    assert not resumed.paused and resumed.next_run_at == made.next_run_at
    assert made.id in listed and refused.value.code == "InvalidRequest"
    with pytest.raises(NotFound):
        Client(runtime.url, BOB).get_schedule(made)  # another client's: unknown
    jobs.delete_schedule(made)
    with pytest.raises(NotFound):
        jobs.get_schedule(made)

    base = ["--url", runtime.url, "--key", ALICE, "schedule"]
    assert cli.main([*base, "add", "*/15 * * * *", "sleep", "--payload", '{"steps": 1}', "--overlap", "allow"]) == 0
    schedule_id = json.loads(capsys.readouterr().out)["scheduleId"]
    assert cli.main([*base, "pause", schedule_id]) == 0 and json.loads(capsys.readouterr().out)["paused"] is True
    assert cli.main([*base, "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["SCHEDULE", "CRON", "TIMEZONE"]
    row = next(line for line in listing if line.startswith(schedule_id))
    assert "*/15 * * * *" in row and "paused" in row and " UTC " in row
    assert cli.main([*base, "resume", schedule_id]) == 0 and json.loads(capsys.readouterr().out)["paused"] is False
    assert cli.main([*base, "add", "nope", "sleep"]) == 1
    assert "400: InvalidRequest cron 'nope' must have 5 fields" in capsys.readouterr().err
    assert cli.main([*base, "rm", schedule_id]) == 0 and cli.main([*base, "rm", schedule_id]) == 1

    async def main():
        async with AsyncClient(runtime.url, ALICE) as client:
            schedule = await client.create_schedule("30 2 * * *", {"type": "sleep"}, overlap="allow", paused=True)
            ids = [s.id async for s in client.schedules()]
            changed = await client.update_schedule(schedule, cron="45 3 * * *", paused=False)
            await client.delete_schedule(schedule)
            return schedule, ids, changed

    schedule, ids, changed = asyncio.run(main())
    assert schedule.paused and schedule.id in ids and changed.cron == "45 3 * * *"
    assert changed.next_run_at.minute == 45 and changed.overlap == "allow"
