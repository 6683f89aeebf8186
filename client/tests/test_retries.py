"""The client's rules without a server: retries, pacing, errors, where the key goes (httpx.MockTransport).

Every request the client sends is recorded, so the counts are exact; waits go to a recording `sleep`
instead of the clock.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from jobs_client import (
    AsyncClient,
    BadRequest,
    Client,
    Forbidden,
    JobStatus,
    NotFound,
    RetryPolicy,
    ServerError,
    TooManyRequests,
    TransportError,
)

URL = "http://api.test"
JOB = "01KB0000000000000000000000"


def view(status="RUNNING", progress=0, **extra):
    return {"jobId": JOB, "type": "sleep", "status": status, "progress": progress, **extra}


class Server:
    """Answers from a script, one per request; records each request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def reply(status, body=None, **headers):
    return httpx.Response(status, json=body, headers=headers)


def client(server, **kwargs):
    waits: list[float] = []
    c = Client(URL, "secret-key", transport=httpx.MockTransport(server), sleep=waits.append, **kwargs)
    return c, waits


def test_a_429_is_retried_with_growing_jittered_waits_then_succeeds():
    server = Server(*[reply(429, {"message": "Too Many Requests"})] * 4, reply(200, view()))
    jobs, waits = client(server, retry=RetryPolicy(base_delay=1.0, max_delay=30.0))

    job = jobs.get(JOB)

    assert job.status is JobStatus.RUNNING
    assert len(server.requests) == 5
    for n, wait in enumerate(waits):  # the n-th wait is between half and all of 2**n s
        assert 2**n / 2 <= wait <= 2**n
    assert len(waits) == 4


def test_retries_are_bounded_and_the_last_429_is_raised_with_the_gateways_words():
    server = Server(reply(429, {"message": "Too Many Requests"}, **{"x-amzn-ErrorType": "TooManyRequestsException"}))
    jobs, waits = client(server, retry=RetryPolicy(max_retries=3, base_delay=1.0, max_delay=2.0))

    with pytest.raises(TooManyRequests) as caught:
        jobs.get(JOB)

    assert len(server.requests) == 4
    assert all(wait <= 2.0 for wait in waits)  # capped by max_delay
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        429,
        "TooManyRequests",
        "Too Many Requests",
    )


def test_a_503_on_get_is_retried_no_sooner_than_its_retry_after():
    server = Server(
        reply(503, {"code": "ServiceUnavailable", "message": "down"}, **{"Retry-After": "5"}), reply(200, view())
    )
    jobs, waits = client(server)

    jobs.get(JOB)

    assert len(server.requests) == 2 and waits[0] >= 5


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_post_without_an_idempotency_key_is_not_retried_after_a_transient_error(status):
    server = Server(reply(status, {"code": "ServiceUnavailable", "message": "down"}))
    jobs, waits = client(server)

    with pytest.raises(ServerError) as caught:
        jobs.request("POST", "/jobs", json={"type": "sleep"})

    assert len(server.requests) == 1 and waits == []
    assert caught.value.code == "ServiceUnavailable"


def test_submit_adds_an_idempotency_key_and_sends_the_same_one_on_every_retry():
    server = Server(
        httpx.ConnectError("refused"),
        reply(503, {"code": "ServiceUnavailable", "message": "down"}),
        reply(202, view("PENDING")),
    )
    jobs, _ = client(server)

    job = jobs.submit("sleep", {"steps": 2})

    keys = {request.headers["idempotency-key"] for request in server.requests}
    assert job.status is JobStatus.PENDING and len(server.requests) == 3 and len(keys) == 1
    assert json.loads(server.requests[0].content) == {"type": "sleep", "payload": {"steps": 2}}


def test_a_given_idempotency_key_is_sent_as_given():
    server = Server(reply(202, view("PENDING")))
    jobs, _ = client(server)

    jobs.submit("sleep", idempotency_key="report-2026-12-01")

    assert server.requests[0].headers["idempotency-key"] == "report-2026-12-01"


def test_connection_errors_of_a_get_are_retried_and_then_raised_as_transport_errors():
    server = Server(httpx.ConnectError("connection refused"))
    jobs, _ = client(server, retry=RetryPolicy(max_retries=2))

    with pytest.raises(TransportError, match="cannot reach http://api.test"):
        jobs.get(JOB)

    assert len(server.requests) == 3


def test_other_4xx_are_never_retried_and_carry_the_apis_code_and_message():
    server = Server(reply(400, {"code": "InvalidJobId", "message": "'x' is not a job id"}))
    jobs, _ = client(server)

    with pytest.raises(BadRequest) as caught:
        jobs.get("x")

    assert len(server.requests) == 1
    assert (caught.value.code, caught.value.message) == ("InvalidJobId", "'x' is not a job id")


def test_the_gateways_403_is_forbidden():
    jobs, _ = client(Server(reply(403, {"message": "Forbidden"}, **{"x-amzn-ErrorType": "ForbiddenException"})))
    with pytest.raises(Forbidden) as caught:
        jobs.limits()
    assert caught.value.code == "Forbidden"


def test_the_api_key_goes_to_the_api_only_never_to_s3(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes(b"a,b\n1,2\n")
    upload = {
        "bucket": "in",
        "key": "inputs/demo/x-sales.csv",
        "uploadUrl": "http://s3.test/in",
        "fields": {"key": "k"},
    }
    server = Server(
        reply(201, upload),
        httpx.Response(204),
        reply(303, None, Location="http://s3.test/results/x.json?X-Amz-Signature=abc"),
        reply(200, {"rows": 1}),
    )
    jobs, _ = client(server)

    jobs.upload(path)
    result = jobs.result(JOB)

    api, s3_post, redirect, s3_get = server.requests
    assert api.headers["x-api-key"] == redirect.headers["x-api-key"] == "secret-key"
    assert "x-api-key" not in s3_post.headers and "x-api-key" not in s3_get.headers
    assert s3_post.content.rstrip().endswith(b"--")  # the file is the form's last part
    assert b'name="key"' in s3_post.content and b"a,b\n1,2\n" in s3_post.content
    assert str(s3_get.url) == "http://s3.test/results/x.json?X-Amz-Signature=abc"
    assert result == {"rows": 1}


def test_wait_polls_no_sooner_than_each_retry_after_and_reports_every_view():
    server = Server(
        reply(200, view(progress=10), **{"Retry-After": "3"}),
        reply(200, view(progress=60), **{"Retry-After": "2"}),
        reply(200, view("COMPLETED", 100, result={"ok": True})),
    )
    jobs, waits = client(server)
    seen = []

    done = jobs.wait(JOB, on_progress=lambda job: seen.append(job.progress))

    assert done.result == {"ok": True} and done.terminal
    assert waits == [3.0, 2.0]
    assert seen == [10, 60, 100]


def test_wait_all_polls_every_job_in_one_request_per_cycle():
    other = "01KB0000000000000000000001"
    page1 = {"jobs": [view(progress=50), {**view(), "jobId": other}], "nextCursor": None}
    page2 = {"jobs": [view("COMPLETED", 100), {**view("FAILED"), "jobId": other}], "nextCursor": None}
    server = Server(reply(200, page1, **{"Retry-After": "4"}), reply(200, page2))
    jobs, waits = client(server)

    views = jobs.wait_all([JOB, other])

    assert [v.status for v in views] == [JobStatus.COMPLETED, JobStatus.FAILED]
    assert len(server.requests) == 2 and waits == [4.0]
    assert server.requests[0].url.params["ids"] == f"{JOB},{other}"


def test_wait_all_says_so_when_a_job_is_not_there():
    jobs, _ = client(Server(reply(200, {"jobs": [], "nextCursor": None})))
    with pytest.raises(NotFound):
        jobs.wait_all([JOB])


def test_list_follows_next_cursor_until_the_last_page():
    first = {
        "jobs": [view(), {**view(), "jobId": "01KB0000000000000000000001"}],
        "nextCursor": "01KB0000000000000000000001",
    }
    last = {"jobs": [{**view(), "jobId": "01KB0000000000000000000002"}], "nextCursor": None}
    server = Server(reply(200, first), reply(200, last))
    jobs, _ = client(server)

    listed = [job.id for job in jobs.list(page_size=2)]

    assert len(listed) == 3 and len(server.requests) == 2
    assert server.requests[1].url.params["cursor"] == "01KB0000000000000000000001"


def test_a_status_the_client_does_not_know_is_kept_not_refused():
    jobs, _ = client(Server(reply(200, view("PAUSED"))))
    job = jobs.get(JOB)
    assert job.status == "PAUSED" and not job.terminal


def test_the_async_client_follows_the_same_rules():
    server = Server(
        reply(429, {"message": "Too Many Requests"}),
        reply(202, view("PENDING"), **{"Retry-After": "1"}),
        reply(200, view("COMPLETED", 100)),
    )
    waits: list[float] = []

    async def sleep(seconds):
        waits.append(seconds)

    async def main():
        seen = []

        async def progress(job):
            seen.append(job.status)

        async with AsyncClient(URL, "secret-key", transport=httpx.MockTransport(server), sleep=sleep) as jobs:
            done = await jobs.wait(await jobs.submit("sleep"), on_progress=progress)
        return done, seen

    done, seen = asyncio.run(main())

    assert done.status is JobStatus.COMPLETED
    assert seen == [JobStatus.PENDING, JobStatus.COMPLETED]
    assert len(server.requests) == 3 and len(waits) == 2 and waits[1] == 1.0
    assert server.requests[0].headers["idempotency-key"] == server.requests[1].headers["idempotency-key"]


def test_the_package_imports_without_the_server_code():
    # From a directory outside the repository, so nothing of it is on the path but what is installed.
    probe = (
        "import sys, jobs_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'chalicelib', 'local', 'app', 'infra', 'boto3'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path("/"), capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_wheel_holds_the_client_alone_and_needs_only_httpx_and_standardwebhooks(tmp_path):
    # Built from a copy, as `pip install ./client` builds it (setuptools writes build/ next to the source).
    import shutil
    import zipfile

    source = tmp_path / "client"
    shutil.copytree(Path(__file__).resolve().parents[1], source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("jobs_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()

    assert {name.split("/")[0] for name in names} == {"jobs_client", wheel.name.split("-py3")[0] + ".dist-info"}
    requires = sorted(
        re.match(r"[A-Za-z0-9_.-]+", line.split(":", 1)[1].strip()).group()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    )
    assert requires == ["httpx", "standardwebhooks"]


def test_webhook_routes_sync_and_async():
    made = {
        "deliveries": [
            {
                "attempt": 1,
                "at": "2026-12-02T03:00:00.000Z",
                "statusCode": 503,
                "error": "HTTP 503",
                "nextRetryAt": "2026-12-02T03:00:05.000Z",
            },
            {"attempt": 2, "at": "2026-12-02T03:00:05.100Z", "statusCode": 204, "error": None, "nextRetryAt": None},
        ]
    }
    server = Server(reply(202, view("PENDING")), reply(200, made), reply(200, {"secret": "whsec_c2VjcmV0"}))
    jobs, _ = client(server)

    jobs.submit("sleep", {}, callback_url="https://hooks.example.com/j")
    first, second = jobs.deliveries(JOB)
    secret = jobs.webhook_secret()

    assert json.loads(server.requests[0].content)["callbackUrl"] == "https://hooks.example.com/j"
    assert [r.url.path for r in server.requests[1:]] == [f"/jobs/{JOB}/deliveries", "/webhook-secret"]
    assert (first.status_code, first.delivered, first.next_retry_at.second) == (503, False, 5)
    assert (second.status_code, second.delivered, second.next_retry_at) == (204, True, None)
    assert secret == "whsec_c2VjcmV0"

    async def from_async():
        async_server = Server(reply(200, made), reply(200, {"secret": "whsec_c2VjcmV0"}))
        async with AsyncClient(URL, "k", transport=httpx.MockTransport(async_server)) as ajobs:
            return await ajobs.deliveries(JOB), await ajobs.webhook_secret()

    async_made, async_secret = asyncio.run(from_async())
    assert [d.attempt for d in async_made] == [1, 2] and async_secret == secret


def test_submit_sends_the_priority_asked_for_and_the_job_reads_it_back():
    server = Server(reply(202, {**view("PENDING"), "priority": "high"}), reply(202, view("PENDING")))
    jobs, _ = client(server)

    high = jobs.submit("sleep", {}, priority="high")
    plain = jobs.submit("sleep", {})

    assert json.loads(server.requests[0].content)["priority"] == "high"
    assert "priority" not in json.loads(server.requests[1].content)  # the server's default: normal
    assert (high.priority, plain.priority) == ("high", "normal")
