"""Job types as the users' code: JOB_TYPES, the SDK's context, progress in the type's units, check-type."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import errors
from chalicelib import runtime as runtime_module
from chalicelib.jobs import BUILTIN_MODULES, JobTypes, testing
from chalicelib.jobs.sleep import Sleep
from chalicelib.runtime import Runtime
from tests.conftest import PROBE_MODULE, Api
from tests.support import broken_types

ROOT = Path(__file__).resolve().parents[1]


def user_module(directory: Path, name: str, body: str) -> str:
    """Write a module of the user's own outside chalicelib/ (on sys.path for this test); returns its name."""
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("acme_")]:
        del sys.modules[name]


COUNTDOWN = """
    from chalicelib.jobs import JobType, Step

    class Countdown(JobType):
        name = "countdown"
        payload_schema = {"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 100}}}

        def start(self, payload, ctx):
            return {"left": payload["n"], "owner": ctx.owner, "job": ctx.job_id}

        def step(self, payload, state, ctx):
            left = state["left"] - 1
            return Step(state={**state, "left": left}, done=payload["n"] - left, total=payload["n"],
                        finished=left == 0, message=f"{left} left")

        def finish(self, payload, state, ctx):
            return {"counted": payload["n"], "owner": state["owner"], "job": state["job"]}
"""


def test_a_type_from_a_users_module_runs_end_to_end_with_its_context(settings, user_dir, sqs):
    # Given a deployment whose JOB_TYPES names a module of the team's own, outside chalicelib/
    module = user_module(user_dir, "acme_countdown", COUNTDOWN)
    runtime_module.use(Runtime(replace(settings, job_types=(module,))))
    from local.eventsource import EventSource

    with Client(app_module.app) as client:
        api = Api(client)
        # When a client submits a job of that type and the worker runs it
        submitted = api.submit("countdown", {"n": 4})
        EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs).drain()
        job = api.get(submitted.json["jobId"]).json
        refused = api.submit("countdown", {"n": 0})

    # Then it completed, its context carried the job's id and owner, and its schema is enforced
    assert submitted.status == 202
    assert job["status"] == "COMPLETED" and job["progressDetail"] == {"done": 4, "total": 4, "stage": None}
    assert job["result"] == {"counted": 4, "owner": "key-a", "job": submitted.json["jobId"]}
    assert refused.status == 400 and refused.json["code"] == "InvalidPayload"


@pytest.mark.parametrize(
    "body, expected",
    [
        (None, "JOB_TYPES: no module named 'acme_missing'"),
        (
            "raise RuntimeError('no licence key')",
            "JOB_TYPES: module 'acme_missing' failed to import: RuntimeError: no licence key",
        ),
        (
            "import acme_not_installed",
            "JOB_TYPES: module 'acme_missing' failed to import: No module named 'acme_not_installed'",
        ),
        (
            "X = 1",
            "JOB_TYPES: module 'acme_missing' defines no job type (a subclass of chalicelib.jobs.JobType with a name)",
        ),
        (
            "from chalicelib.jobs.sleep import Sleep\nclass Other(Sleep):\n    pass",
            "JOB_TYPES: two job types are named 'sleep': chalicelib.jobs.sleep.Sleep and acme_missing.Other",
        ),
    ],
)
def test_a_bad_job_types_module_is_a_503_naming_it_never_a_stack_trace(settings, user_dir, body, expected, log_output):
    # Given JOB_TYPES naming a module that is missing, fails to import, has no type, or repeats a name
    if body is not None:
        user_module(user_dir, "acme_missing", body)
    runtime_module.use(Runtime(replace(settings, job_types=("acme_missing",))))

    # When the health check and a client call the API
    with Client(app_module.app) as client:
        api = Api(client)
        health = api.request("GET", "/health", key=None)
        submit = api.submit("sleep", {})
        again = api.submit("sleep", {})

    # Then /health is a 503 that names the module and the reason, and requests are JSON 503s
    assert health.status == 503 and health.json["checks"] == {"jobTypes": "unavailable"}
    assert health.json["message"] == f"unavailable: jobTypes ({expected})"
    assert submit.status == again.status == 503 and submit.json["code"] == "ServiceMisconfigured"
    assert "Traceback" not in json.dumps(submit.json)
    # and the reason was logged once, however many requests came
    logged = log_output.getvalue()
    assert logged.count("job types cannot be loaded") == 1 and "acme_missing" in logged


def test_the_health_check_reports_the_job_types_when_they_load(api):
    reply = api.request("GET", "/health", key=None)
    assert reply.status == 200 and reply.json["checks"]["jobTypes"] == "ok"


def test_no_module_of_chalicelib_jobs_imports_the_wiring():
    # Each job-type module imported alone, in a fresh interpreter: nothing of the runtime, service or worker comes in
    modules = [*BUILTIN_MODULES, "chalicelib.jobs", "chalicelib.jobs.testing"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m in ('chalicelib.runtime', 'chalicelib.service', "
        "'chalicelib.worker', 'chalicelib.sweeper', 'app')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_eta_follows_the_observed_rate_of_the_types_own_units(api, events, rt, monkeypatch):
    # Given a byte-counting type: 40 chunks of 1 MB, each taking 100 ms (4 s in all)
    writes = []
    write_chunk = rt.hot.write_chunk

    def recorded(job, view, **kwargs):  # each chunk's write, with the ETA it shows
        writes.append((time.monotonic(), job.eta_seconds))
        return write_chunk(job, view, **kwargs)

    monkeypatch.setattr(rt.hot, "write_chunk", recorded)
    job_id = api.submit("paced", {"bytes": 40_000_000, "chunkBytes": 1_000_000, "stepMs": 100}).json["jobId"]

    # When the worker runs it
    events.drain()
    ended = writes[-1][0]

    # Then every ETA shown with at least 2 s to go was within 2x of the time really left
    shown = [(ended - at, eta) for at, eta in writes if eta is not None]
    checked = [(left, eta) for left, eta in shown if left >= 2]
    assert len(checked) >= 10
    assert all(left / 2 <= eta <= left * 2 for left, eta in checked), checked
    assert api.get(job_id).json["status"] == "COMPLETED"


# --- check-type -------------------------------------------------------------------------------------
def check_type(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "local.cli", "check-type", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_check_type_passes_the_built_ins(tmp_path):
    sample = tmp_path / "sales.csv"
    sample.write_text("region,amount\n" + "".join(f"r{i % 3},{i}.5\n" for i in range(400)))
    text = tmp_path / "text.txt"
    text.write_text("Café au lait, café noir! " * 300 + "日本語 テキスト " * 50)

    runs = [
        check_type("chalicelib.jobs.sleep:sleep", "--payload", '{"steps": 4, "stepMs": 1}'),
        check_type(
            "chalicelib.jobs.csv_stats:CsvStats",
            "--payload",
            '{"bucket": "in", "key": "sales.csv", "chunkBytes": 1024}',
            "--object",
            f"in/sales.csv={sample}",
        ),
        check_type(
            "chalicelib.jobs.word_frequency:word-frequency",
            "--payload",
            '{"bucket": "in", "key": "t.txt", "chunkBytes": 1024}',
            "--object",
            f"in/t.txt={text}",
        ),
    ]

    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
        assert ": safe to redo (" in done.stdout
    assert "sleep: safe to redo (4 chunks" in runs[0].stdout


@pytest.mark.parametrize(
    "name, explained",
    [
        (
            "HiddenCounter",
            [
                "every chunk run twice from its checkpoint: chunk 1: the state after it differs",
                "a counter kept on the type",
                'expected: {"calls": 1, "done": 1}',
                'got:      {"calls": 2, "done": 1}',
            ],
        ),
        (
            "clock-result",
            [
                "state JSON round-tripped after every chunk: the result differs from the uninterrupted run's",
                "the clock",
            ],
        ),
        ("SetState", ["the state from start is not JSON (Object of type set is not JSON serializable)"]),
    ],
)
def test_check_type_fails_an_unsafe_type_saying_why(name, explained):
    done = check_type(f"tests.support.broken_types:{name}")

    assert done.returncode == 1
    assert "NOT SAFE" in done.stdout
    for words in explained:
        assert words in done.stdout, done.stdout


def test_check_type_usage_errors_exit_2():
    assert check_type("tests.support.broken_types").returncode == 2
    missing = check_type("tests.support.broken_types:nothing-here")
    assert missing.returncode == 2 and "its types: clock-result, hidden-counter, hoarder, set-state" in missing.stderr


def test_the_pytest_helper_reports_like_the_command():
    report = testing.check_job_type(Sleep(), {"steps": 3, "stepMs": 0})
    assert report.ok and report.chunks == 3 and report.result == {"steps": 3, "sleptMs": 0}
    assert len(report.ways) == 4
    with pytest.raises(AssertionError, match="NOT SAFE"):
        testing.assert_redo_safe(broken_types.HiddenCounter(), {})


def test_check_type_enforces_the_checkpoint_ceiling_and_the_chunk_budget():
    growing = testing.check_job_type(broken_types.Hoarder(), {"bytesPerStep": 100_000, "steps": 5})
    slow = testing.check_job_type(Sleep(), {"steps": 2, "stepMs": 50}, chunk_budget_seconds=0.01)

    assert not growing.ok and "over the checkpoint ceiling of 262144" in growing.problem
    assert not slow.ok and "chunk 1 took" in slow.problem and "over the budget of 0.01 s" in slow.problem


def test_a_payload_the_schema_refuses_is_reported():
    report = testing.check_job_type(Sleep(), {"steps": 0})
    assert not report.ok and report.problem.startswith("the payload is refused: payload.steps must be bigger")


def test_registry_refuses_two_types_of_one_name():
    with pytest.raises(errors.Misconfigured, match="two job types are named 'sleep'"):
        JobTypes([Sleep(), Sleep()])
    assert "probe" in JobTypes.load((PROBE_MODULE,)).names()


PACKAGED_RUN = """
import json, os, sys
import app, chalicelib
from chalicelib import runtime
from local import services
from local.eventsource import EventSource
assert app.__file__.startswith(os.getcwd()) and chalicelib.__file__.startswith(os.getcwd()), app.__file__
rt = runtime.get()
job_id = rt.service.submit("key-a", {"type": "countdown", "payload": {"n": 3}}).job.id
sqs = services.sqs_client(rt.settings.aws_endpoint_url, rt.settings.aws_region)
EventSource(sqs, rt.settings.jobs_queue_url, app.run_jobs).drain()
from chalicelib import http
print(json.dumps(http.job_view(rt.service.get("key-a", job_id))))
"""


def test_a_packaged_zip_contains_and_runs_a_user_type(settings, tmp_path):
    # Given a deployment with a module of its own in chalicelib/jobtypes/, named in JOB_TYPES
    from infra import deploy
    from tests.test_infra import CHALICE, CHALICE_CONFIG

    build = tmp_path / "app"
    deploy.prepare_build_dir(ROOT, build, CHALICE_CONFIG)
    (build / "chalicelib" / "jobtypes" / "acme_countdown.py").write_text(textwrap.dedent(COUNTDOWN))

    # When `chalice package` builds the Lambda zip
    subprocess.run(
        [CHALICE, "--project-dir", str(build), "package", "--stage", "dev", str(tmp_path / "out")],
        check=True,
        capture_output=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "out" / "deployment.zip") as package:
        names = set(package.namelist())
        package.extractall(unzipped)

    # Then the zip holds the module, and the packaged app (not this checkout) runs a job of its type
    assert "chalicelib/jobtypes/acme_countdown.py" in names
    deployed = replace(settings, job_types=("chalicelib.jobtypes.acme_countdown",))
    env = {**os.environ, **deployed.to_env(), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", PACKAGED_RUN], cwd=unzipped, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = json.loads(done.stdout.strip().splitlines()[-1])
    assert job["status"] == "COMPLETED" and job["result"]["counted"] == 3


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readmes_job_type_is_the_modules_own_code_and_its_test_passes():
    section = readme_section("Write your own job type")
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    module = (ROOT / "chalicelib" / "jobs" / "word_frequency.py").read_text()

    assert len(blocks) == 3
    assert blocks[0] in module and blocks[1] in module  # the imports, then the class to the end
    assert module.endswith(blocks[1])
    namespace: dict = {}
    exec(compile(blocks[2], "README.md", "exec"), namespace)  # the README's own test, run
    namespace["test_word_frequency_counts_and_is_safe_to_redo"]()


LOGGING = """
    from chalicelib.jobs import JobType, Step

    class Chatty(JobType):
        name = "chatty"

        def step(self, payload, state, ctx):
            ctx.log.info("chatty step ran")
            return Step(state=None, done=1, total=1, finished=True)
"""


def test_a_types_log_lines_carry_the_jobs_id_and_owner(settings, user_dir, sqs, log_output):
    module = user_module(user_dir, "acme_chatty", LOGGING)
    runtime_module.use(Runtime(replace(settings, job_types=(module,))))
    from local.eventsource import EventSource

    with Client(app_module.app) as client:
        job_id = Api(client).submit("chatty", {}, key="key-b").json["jobId"]
        EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs).drain()

    [line] = [json.loads(raw) for raw in log_output.getvalue().splitlines() if "chatty step ran" in raw]
    assert line["job_id"] == job_id and line["owner"] == "key-b"


def test_chunk_after_chunk_without_progress_ends_in_no_eta_not_an_overflow():
    # The averaged rate decays towards zero when no unit is done; past ~2,000 such chunks the ETA
    # was math.ceil(inf) and the worker raised OverflowError (found in issue 20's review).
    from datetime import UTC, datetime

    from chalicelib.chunks import Run
    from chalicelib.jobs import Step
    from chalicelib.models import Job, JobStatus

    now = datetime.now(UTC)
    job = Job(
        id="01M8T9BV1FHTZ0CHVTCGRQ6549",
        owner="o",
        type="t",
        status=JobStatus.RUNNING,
        payload={},
        created_at=now,
        updated_at=now,
        max_attempts=1,
        timeout_seconds=60,
    )
    run = Run(job=job, job_type=None, ctx=None, payload={}, state=None, seq=0, token="t")  # type: ignore[arg-type]
    run.observe(Step(state=None, done=1, total=100), elapsed_ms=10)
    assert job.eta_seconds == 1  # 99 units at 100 a second

    for _ in range(5000):
        run.observe(Step(state=None, done=1, total=100), elapsed_ms=10)

    assert job.eta_seconds is None and job.progress == 1
