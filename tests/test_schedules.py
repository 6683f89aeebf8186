"""Recurring schedules: POST/GET/PATCH/DELETE /schedules and the sweeper's rule that fires them.

Given the API, the sweeper and the worker over real MariaDB, Redis and moto's SQS, with the clock
passed in where the test needs another day: a schedule answers 201 with its view and its first
occurrence; bad expressions, zones and job templates are 400s naming them; another key's schedule
is a 404 like an unknown one; a plan's maxSchedules holds even against concurrent creates; each
occurrence makes exactly one SCHEDULED job with runAt = the occurrence, even with two sweeper
processes at once or a sweeper SIGKILLed mid-pass; DST in Europe/Berlin does what the README says;
a pause makes nothing, a resume runs only the latest missed occurrence; overlap "skip" skips while
the previous job is active; and the occurrence's job starts through the delayed-job path.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib import errors, schedule_store, tenants
from chalicelib import runtime as runtime_module
from chalicelib import sweeper as sweeper_module
from chalicelib.models import JobStatus, isoformat
from chalicelib.runtime import Runtime
from chalicelib.schedule_store import ScheduleStore
from chalicelib.schedules import LOOKAHEAD_SECONDS, ScheduleService
from chalicelib.tenants import Limits
from tests.conftest import put_tenants, wait_until

SLEEP_JOB = {"type": "sleep", "payload": {"steps": 1}}


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _create(api, *, key: str = "key-a", **body):
    return api.request("POST", "/schedules", key=key, body={"cron": "*/5 * * * *", "job": SLEEP_JOB, **body})


def _service(rt: Runtime, clock) -> ScheduleService:
    """The runtime's schedules, with the clock the test sets (`clock` is a one-item list)."""
    return ScheduleService(ScheduleStore(rt.store.execute), rt.service, rt.store, rt.tenants, clock=lambda: clock[0])


def _jobs(mysql, schedule_id: str | None = None) -> list[dict]:
    """The jobs made for schedules (or for one of them), by runAt."""
    pattern = "schedule:%" if schedule_id is None else f"schedule:{schedule_id}:%"
    with mysql.cursor() as cur:
        cur.execute(
            "SELECT id, owner, status, run_at, sent, idempotency_key FROM jobs WHERE idempotency_key LIKE %s"
            " ORDER BY run_at, id",
            (pattern,),
        )
        return list(cur.fetchall())


def _row(mysql, schedule_id: str) -> dict:
    with mysql.cursor() as cur:
        cur.execute("SELECT * FROM schedules WHERE id = %s", (schedule_id,))
        return cur.fetchone()


# --- the routes ------------------------------------------------------------------------------------
def test_a_schedule_is_created_with_its_view_and_read_listed_changed_and_deleted(api, mysql):
    created = _create(api, cron="*/5  * * * *", timezone="Europe/Berlin")

    assert created.status == 201
    view = created.json
    assert created.headers["location"] == f"/schedules/{view['scheduleId']}"
    assert view["cron"] == "*/5 * * * *" and view["timezone"] == "Europe/Berlin"
    assert view["job"] == SLEEP_JOB  # as given: the type's defaults are not written into it
    assert (view["overlap"], view["paused"], view["skipped"]) == ("skip", False, 0)
    assert (view["lastRunAt"], view["lastJobId"], view["lastSkippedAt"]) == (None, None, None)
    next_run = _z(view["nextRunAt"])
    now = datetime.now(UTC)
    assert now < next_run <= now + timedelta(minutes=5) and next_run.minute % 5 == 0 and next_run.second == 0
    schedule_id = view["scheduleId"]

    assert api.request("GET", f"/schedules/{schedule_id}").json == view
    assert api.request("GET", "/schedules").json == {"schedules": [view], "nextCursor": None}

    paused = api.request("PATCH", f"/schedules/{schedule_id}", body={"paused": True})
    assert paused.status == 200 and paused.json["paused"] is True and paused.json["nextRunAt"] is None
    changed = api.request(
        "PATCH",
        f"/schedules/{schedule_id}",
        body={"paused": False, "cron": "0 6 * * 1-5", "overlap": "allow", "job": {"type": "sleep"}},
    )
    assert changed.status == 200
    assert (changed.json["cron"], changed.json["overlap"], changed.json["job"]) == (
        "0 6 * * 1-5",
        "allow",
        {"type": "sleep"},
    )
    next_run = _z(changed.json["nextRunAt"])
    assert next_run.hour in (5, 6) and next_run.weekday() < 5  # 06:00 in UTC, the default zone of none given

    deleted = api.request("DELETE", f"/schedules/{schedule_id}")
    assert deleted.status == 204 and deleted.json is None
    assert api.request("GET", f"/schedules/{schedule_id}").status == 404
    assert _row(mysql, schedule_id) is None


def test_the_list_is_paged_newest_first(api):
    ids = [_create(api).json["scheduleId"] for _ in range(3)]

    first = api.request("GET", "/schedules?limit=2").json
    second = api.request("GET", f"/schedules?limit=2&cursor={first['nextCursor']}").json

    assert [s["scheduleId"] for s in first["schedules"]] == ids[::-1][:2]
    assert [s["scheduleId"] for s in second["schedules"]] == ids[:1] and second["nextCursor"] is None
    assert api.request("GET", "/schedules?limit=0").status == 400
    assert api.request("GET", "/schedules?cursor=nope").status == 400


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"cron": "*/10 * * * * *"},
            "InvalidRequest",
            "cron '*/10 * * * * *' has a seconds field: schedules fire at most once a minute",
        ),
        ({"cron": "* * *"}, "InvalidRequest", "cron '* * *' must have 5 fields"),
        ({"cron": "61 * * * *"}, "InvalidRequest", "cron '61 * * * *' is not a valid expression: Bad minute"),
        ({"cron": "0 0 30 2 *"}, "InvalidRequest", "cron '0 0 30 2 *' is not a valid expression: Bad day-of-month"),
        ({"cron": "@daily"}, "InvalidRequest", "cron '@daily' must have 5 fields"),
        ({"cron": 5}, "InvalidRequest", "cron must be a string of 1 to 255 characters"),
        ({"timezone": "Mars/Olympus"}, "InvalidRequest", "timezone 'Mars/Olympus' is not an IANA time zone name"),
        (
            {"timezone": "../../etc/passwd"},
            "InvalidRequest",
            "timezone '../../etc/passwd' is not an IANA time zone name",
        ),
        ({"job": {"type": "nope"}}, "UnknownJobType", "unknown job type"),
        ({"job": {"type": "sleep", "payload": {"steps": "x"}}}, "InvalidPayload", ""),
        ({"job": {"type": "sleep", "colour": "red"}}, "InvalidRequest", "unknown fields: colour"),
        ({"job": {"type": "sleep", "runAt": "2030-01-01T00:00:00Z"}}, "InvalidRequest", "job: runAt cannot be set"),
        ({"job": {"type": "sleep", "maxAttempts": 0}}, "InvalidRequest", "maxAttempts must be an integer from 1 to 20"),
        ({"job": "sleep"}, "InvalidJson", "the body must be a JSON object"),
        ({"overlap": "queue"}, "InvalidRequest", 'overlap must be "skip" or "allow"'),
        ({"paused": "yes"}, "InvalidRequest", "paused must be true or false"),
        ({"every": "minute"}, "InvalidRequest", "unknown fields: every"),
    ],
)
def test_bad_schedules_are_400s_naming_what_is_wrong_and_keep_nothing(api, mysql, body, code, message):
    reply = _create(api, **body)

    assert reply.status == 400 and reply.json["code"] == code
    assert reply.json["message"].startswith(message)
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM schedules")
        assert cur.fetchone()["n"] == 0


def test_a_patch_is_checked_as_a_create_is(api):
    schedule_id = _create(api).json["scheduleId"]

    for body in ({"cron": "* * * * * *"}, {"timezone": "Nowhere"}, {"job": {"type": "nope"}}, {"nextRunAt": "x"}):
        assert api.request("PATCH", f"/schedules/{schedule_id}", body=body).status == 400
    assert api.request("GET", f"/schedules/{schedule_id}").json["cron"] == "*/5 * * * *"


def test_another_keys_schedule_is_a_404_like_an_unknown_one(api, mysql):
    schedule_id = _create(api, key="key-a").json["scheduleId"]

    for method, body in (("GET", None), ("PATCH", {"paused": True}), ("DELETE", None)):
        theirs = api.request(method, f"/schedules/{schedule_id}", key="key-b", body=body)
        unknown = api.request(method, "/schedules/01M8TPRKTQ0P544KCZ7W0V3JNH", key="key-b", body=body)
        malformed = api.request(method, "/schedules/nope", key="key-b", body=body)
        assert theirs.status == unknown.status == malformed.status == 404
        assert theirs.json["code"] == unknown.json["code"] == "ScheduleNotFound"
    assert api.request("GET", "/schedules", key="key-b").json == {"schedules": [], "nextCursor": None}
    assert _row(mysql, schedule_id)["paused"] == 0


@pytest.fixture
def tenanted(settings, s3, bucket, rt) -> Runtime:
    """acme (key-a) may have 2 schedules and 3 unfinished jobs; other (key-b) is on a big plan."""
    document = tenants.document(
        {
            "acme": ("small", ["key-a"], Limits(3, 1, 600, max_schedules=2)),
            "other": ("big", ["key-b"], Limits(100, 10, 86400, max_schedules=50)),
        }
    )
    runtime = Runtime(replace(settings, tenants_url=put_tenants(s3, bucket, document)))
    runtime_module.use(runtime)
    return runtime


def test_over_max_schedules_is_a_409_and_concurrent_creates_never_keep_more(tenanted, api, mysql):
    statuses: list[int] = []
    start = threading.Barrier(6)

    def create():
        start.wait()
        statuses.append(_create(api).status)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM schedules WHERE owner = 'acme'")
        kept = cur.fetchone()["n"]
    assert statuses.count(201) == kept <= 2 and set(statuses) <= {201, 409}
    for _ in range(kept, 2):  # the racing creates may refuse more than they must, never keep more
        assert _create(api).status == 201
    refused = _create(api)
    assert refused.status == 409 and refused.json["code"] == "ScheduleLimit" and refused.json["maxSchedules"] == 2
    assert refused.json["message"] == "plan small allows 2 schedules (maxSchedules); delete one to make another"
    assert _create(api, key="key-b").status == 201
    assert api.request("GET", "/limits").json["limits"]["maxSchedules"] == 2


def test_a_template_over_the_plans_timeout_is_refused_as_a_submission_is(tenanted, api):
    reply = _create(api, job={"type": "sleep", "timeoutSeconds": 601})

    assert reply.status == 400
    assert reply.json["message"] == "timeoutSeconds must be at most 600, the maxTimeoutSeconds of plan small"


# --- firing ----------------------------------------------------------------------------------------
def _sweep_minutes(settings, starts: list[str], barrier) -> None:
    """A sweeper process: one pass of the schedules rule at each moment, in step with the other."""
    runtime = Runtime(settings)
    for start in starts:
        barrier.wait(timeout=60)
        runtime.schedules.fire_due(datetime.fromisoformat(start), limit=500)
    os._exit(0)


def test_every_minute_fires_exactly_one_job_per_occurrence_with_two_sweeper_processes(api, rt, mysql, settings):
    ids = [_create(api, cron="*/1 * * * *", overlap="allow").json["scheduleId"] for _ in range(10)]
    first = min(_z(api.request("GET", f"/schedules/{i}").json["nextRunAt"]) for i in ids)
    # Passes half a minute before each of 8 occurrences, as the sweeper's every-minute runs would be.
    starts = [(first - timedelta(seconds=30) + timedelta(minutes=m)).isoformat() for m in range(8)]
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    sweepers = [context.Process(target=_sweep_minutes, args=(settings, starts, barrier)) for _ in range(2)]
    for sweeper in sweepers:
        sweeper.start()
    for sweeper in sweepers:
        sweeper.join(timeout=120)
    assert [sweeper.exitcode for sweeper in sweepers] == [0, 0]

    jobs = _jobs(mysql)
    made = [(job["idempotency_key"].split(":")[1], job["run_at"].replace(tzinfo=UTC)) for job in jobs]
    assert len(set(made)) == len(made)  # never two jobs for one (schedule, occurrence)
    assert {job["status"] for job in jobs} == {"SCHEDULED"} and {job["sent"] for job in jobs} == {0}
    for schedule_id in ids:
        runs = sorted(at for owner_id, at in made if owner_id == schedule_id)
        # Every occurrence, none missed; the two sweepers together may reach the last pass's horizon.
        assert runs == [first + timedelta(minutes=m) for m in range(len(runs))] and len(runs) in (8, 9)
        view = api.request("GET", f"/schedules/{schedule_id}").json
        assert _z(view["lastRunAt"]) == runs[-1] and _z(view["nextRunAt"]) == runs[-1] + timedelta(minutes=1)
        assert view["lastJobId"] == next(
            j["id"]
            for j in jobs
            if j["run_at"].replace(tzinfo=UTC) == runs[-1] and j["idempotency_key"].split(":")[1] == schedule_id
        )


def _killed_mid_pass(settings, now: str, after_advances: int) -> None:
    """A sweeper process SIGKILLed in its pass: after its jobs' inserts, at its Nth advance."""
    runtime = Runtime(settings)
    advance, calls = schedule_store.ScheduleStore.advance, []

    def advance_then_die(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == after_advances:
            os.kill(os.getpid(), signal.SIGKILL)  # between this schedule's insert and its advance
        return advance(self, *args, **kwargs)

    schedule_store.ScheduleStore.advance = advance_then_die
    runtime.schedules.fire_due(datetime.fromisoformat(now), limit=500)
    os._exit(0)


def test_a_sweeper_killed_mid_pass_then_rerun_makes_no_second_job(api, rt, mysql, settings):
    ids = [_create(api, overlap="allow").json["scheduleId"] for _ in range(5)]
    due = max(_z(api.request("GET", f"/schedules/{i}").json["nextRunAt"]) for i in ids)
    now = due - timedelta(seconds=30)
    killed = multiprocessing.get_context("fork").Process(target=_killed_mid_pass, args=(settings, now.isoformat(), 3))
    killed.start()
    killed.join(timeout=60)
    assert killed.exitcode == -signal.SIGKILL
    assert len(_jobs(mysql)) == 3 and sum(_row(mysql, i)["last_job_id"] is not None for i in ids) == 2

    report = rt.schedules.fire_due(now, limit=500)
    again = rt.schedules.fire_due(now + timedelta(seconds=1), limit=500)

    jobs = _jobs(mysql)
    assert report.fired == 3 and again.fired == 0  # the 3 it had not moved on: 1 job found, 2 made
    assert sorted(job["idempotency_key"].split(":")[1] for job in jobs) == sorted(ids)
    assert {_row(mysql, i)["last_job_id"] for i in ids} == {job["id"] for job in jobs}


def test_the_occurrences_job_is_scheduled_with_its_run_at_and_starts_through_the_delayed_path(
    api, rt, mysql, events, monkeypatch
):
    schedule_id = _create(api, cron="* * * * *").json["scheduleId"]
    occurrence = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with mysql.cursor() as cur:  # an occurrence 3 s ahead, not up to a minute
        cur.execute("UPDATE schedules SET next_run_at = %s WHERE id = %s", (occurrence, schedule_id))

    report = rt.sweeper.sweep()

    assert (report.schedules_fired, report.scheduled_sent) == (1, 1)  # made and sent in the same pass
    view = api.request("GET", f"/schedules/{schedule_id}").json
    job = api.get(view["lastJobId"]).json
    assert job["status"] == "SCHEDULED" and job["runAt"] == isoformat(occurrence)
    assert _z(view["lastRunAt"]) == occurrence and _z(view["nextRunAt"]) > occurrence
    [record] = wait_until(lambda: events.receive(wait_seconds=1), timeout=10)
    events.invoke([record])
    with mysql.cursor() as cur:
        cur.execute("SELECT status, started_at FROM jobs WHERE id = %s", (view["lastJobId"],))
        row = cur.fetchone()
    late = (row["started_at"].replace(tzinfo=UTC) - occurrence).total_seconds()
    assert row["status"] == "COMPLETED" and 0 <= late < 2.5
    rt.sweeper.sweep()  # it may make the next minute's job; never another for this occurrence
    assert [job["run_at"].replace(tzinfo=UTC) for job in _jobs(mysql, schedule_id)][0] == occurrence
    assert len({job["run_at"] for job in _jobs(mysql, schedule_id)}) == len(_jobs(mysql, schedule_id))


def test_a_pass_is_one_indexed_range_and_two_statements_per_schedule(api, rt, io_counts):
    ids = [_create(api, overlap="allow").json["scheduleId"] for _ in range(3)]
    due = max(_z(api.request("GET", f"/schedules/{i}").json["nextRunAt"]) for i in ids)
    io_counts.reset()

    report = rt.schedules.fire_due(due - timedelta(seconds=30), limit=2)

    statements = [s.split()[0].upper() for s in io_counts.mysql_statements]
    assert report.fired == 2  # bounded by the limit
    assert statements == ["SELECT", "INSERT", "UPDATE", "INSERT", "UPDATE"]
    assert "LIMIT" in io_counts.mysql_statements[0] and "next_run_at <=" in io_counts.mysql_statements[0]
    assert io_counts.redis_round_trips == 0


# --- DST, pause, overlap, limits -------------------------------------------------------------------
def _fire_through(rt, clock, service: ScheduleService, until: datetime, *, step=timedelta(minutes=1)) -> None:
    while clock[0] < until:
        service.fire_due(clock[0], limit=500)
        clock[0] += step


@pytest.mark.parametrize(
    ("cron", "start", "until", "expected"),
    [
        # The skipped 02:30 of 28 March 2027 runs once, at 03:00 CEST (01:00 UTC), the end of the gap.
        ("30 2 * * *", "2027-03-27T12:00Z", "2027-03-29T12:00Z", ["2027-03-28T01:00Z", "2027-03-29T00:30Z"]),
        # The doubled 02:30 of 31 October 2027 runs once, at the first (02:30 CEST, 00:30 UTC).
        ("30 2 * * *", "2027-10-30T12:00Z", "2027-11-01T12:00Z", ["2027-10-31T00:30Z", "2027-11-01T01:30Z"]),
        # A wildcard hour follows real time: no 02:xx in March; both 02:00 and 02:30 twice in October.
        (
            "*/30 * * * *",
            "2027-03-28T00:10Z",
            "2027-03-28T01:40Z",
            ["2027-03-28T00:30Z", "2027-03-28T01:00Z", "2027-03-28T01:30Z"],
        ),
        (
            "*/30 * * * *",
            "2027-10-30T23:50Z",
            "2027-10-31T02:10Z",
            ["2027-10-31T00:00Z", "2027-10-31T00:30Z", "2027-10-31T01:00Z", "2027-10-31T01:30Z", "2027-10-31T02:00Z"],
        ),
    ],
)
def test_dst_in_europe_berlin_does_what_the_readme_says(rt, mysql, cron, start, until, expected):
    clock = [_z(start)]
    service = _service(rt, clock)
    schedule = service.create(
        "key-a", {"cron": cron, "timezone": "Europe/Berlin", "job": SLEEP_JOB, "overlap": "allow"}
    )

    _fire_through(rt, clock, service, _z(until))

    assert [job["run_at"].replace(tzinfo=UTC) for job in _jobs(mysql, schedule.id)] == [_z(t) for t in expected]


def test_a_schedule_made_in_the_repeated_hour_gets_no_occurrence_that_has_passed(rt):
    clock = [_z("2027-10-31T01:10Z")]  # 02:10 CET, after the first 02:30 (CEST) has passed

    schedule = _service(rt, clock).create(
        "key-a", {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "job": SLEEP_JOB}
    )

    assert schedule.next_run_at == _z("2027-11-01T01:30Z")


def test_a_paused_schedule_makes_nothing_and_on_resume_only_the_latest_missed_runs_once(rt, mysql):
    clock = [_z("2027-01-04T09:58Z")]
    service = _service(rt, clock)
    schedule = service.create("key-a", {"cron": "*/5 * * * *", "job": SLEEP_JOB, "overlap": "allow"})
    paused = service.update("key-a", schedule.id, {"paused": True})
    assert paused.paused and paused.next_run_at is None

    _fire_through(rt, clock, service, _z("2027-01-04T10:17Z"))  # 10:00, 10:05, 10:10 and 10:15 pass
    assert _jobs(mysql, schedule.id) == []
    resumed = service.update("key-a", schedule.id, {"paused": False})
    assert resumed.next_run_at == _z("2027-01-04T10:00Z")  # the first occurrence after the pause began
    _fire_through(rt, clock, service, _z("2027-01-04T10:22Z"))

    jobs = _jobs(mysql, schedule.id)
    assert [job["run_at"].replace(tzinfo=UTC) for job in jobs] == [_z("2027-01-04T10:15Z"), _z("2027-01-04T10:20Z")]
    view = service.get("key-a", schedule.id)
    assert view.last_run_at == _z("2027-01-04T10:20Z") and view.next_run_at == _z("2027-01-04T10:25Z")


def test_a_pause_withdraws_the_job_made_ahead_and_a_resume_makes_it_again(api, rt, mysql):
    schedule_id = _create(api, cron="* * * * *").json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])
    rt.schedules.fire_due(due - timedelta(seconds=LOOKAHEAD_SECONDS - 1), limit=10)
    [made] = _jobs(mysql, schedule_id)

    api.request("PATCH", f"/schedules/{schedule_id}", body={"paused": True})
    withdrawn = api.get(made["id"]).json
    api.request("PATCH", f"/schedules/{schedule_id}", body={"paused": False})
    rt.schedules.fire_due(due - timedelta(seconds=LOOKAHEAD_SECONDS - 2), limit=10)

    assert withdrawn["status"] == "CANCELLED" and withdrawn["message"].startswith("withdrawn: its schedule was paused")
    again = [job for job in _jobs(mysql, schedule_id) if job["id"] != made["id"]]
    assert [(job["status"], job["run_at"].replace(tzinfo=UTC)) for job in again] == [("SCHEDULED", due)]


def test_overlap_skip_skips_while_the_previous_job_is_active_and_allow_does_not(rt, mysql):
    clock = [_z("2027-01-04T09:59:30Z")]
    service = _service(rt, clock)
    skip = service.create("key-a", {"cron": "*/5 * * * *", "job": SLEEP_JOB})
    allow = service.create("key-a", {"cron": "*/5 * * * *", "job": SLEEP_JOB, "overlap": "allow"})
    service.fire_due(clock[0], limit=10)  # the 10:00 jobs
    for schedule in (skip, allow):
        assert rt.store.start(service.get("key-a", schedule.id).last_job_id, token="t", at=clock[0])

    report = service.fire_due(_z("2027-01-04T10:04:30Z"), limit=10)

    assert (report.fired, report.skipped) == (1, 1)
    skipped = service.get("key-a", skip.id)
    assert skipped.skipped == 1 and skipped.last_skipped_at is not None
    assert skipped.last_skip_reason == f"overlap: the previous job {skipped.last_job_id} is still RUNNING"
    assert skipped.next_run_at == _z("2027-01-04T10:10Z") and skipped.last_run_at == _z("2027-01-04T10:00Z")
    assert len(_jobs(mysql, allow.id)) == 2 and len(_jobs(mysql, skip.id)) == 1
    rt.store.transition(skipped.last_job_id, from_=(JobStatus.RUNNING,), to=JobStatus.COMPLETED)
    assert service.fire_due(_z("2027-01-04T10:09:30Z"), limit=10).fired == 2  # done: the next one runs


def test_an_occurrence_over_max_active_jobs_is_skipped_with_the_reason_and_keeps_no_job(tenanted, api, mysql):
    for _ in range(3):
        assert api.submit("sleep", {"steps": 1}).status == 202
    schedule_id = _create(api, overlap="allow").json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])

    report = tenanted.schedules.fire_due(due - timedelta(seconds=30), limit=10)

    view = api.request("GET", f"/schedules/{schedule_id}").json
    assert (report.fired, report.skipped) == (0, 1) and _jobs(mysql) == []
    assert view["skipped"] == 1 and view["lastJobId"] is None and _z(view["nextRunAt"]) == due + timedelta(minutes=5)
    assert view["lastSkipReason"].startswith("ActiveJobLimit: plan small allows 3 unfinished jobs at once")


def test_a_delete_withdraws_the_job_made_ahead(api, rt, mysql):
    schedule_id = _create(api).json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])
    rt.schedules.fire_due(due - timedelta(seconds=30), limit=10)

    assert api.request("DELETE", f"/schedules/{schedule_id}").status == 204

    [job] = _jobs(mysql, schedule_id)
    assert job["status"] == "CANCELLED"
    assert api.request("DELETE", f"/schedules/{schedule_id}").status == 404


def test_the_sweeper_fires_schedules_with_its_own_clock(api, rt, mysql, monkeypatch):
    schedule_id = _create(api).json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])
    monkeypatch.setattr(sweeper_module, "utcnow", lambda: due - timedelta(seconds=20))

    report = rt.sweeper.sweep()

    [job] = _jobs(mysql, schedule_id)
    assert (report.schedules_fired, report.scheduled_sent) == (1, 1)
    assert job["run_at"].replace(tzinfo=UTC) == due and job["sent"] == 1


def test_a_clients_idempotency_key_cannot_take_an_occurrences(api, mysql):
    reply = api.submit("sleep", {"steps": 1}, headers={"Idempotency-Key": "schedule:01M8TPRKTQ0P544KCZ7W0V3JNH:0:1"})

    assert reply.status == 400 and reply.json["message"].startswith("Idempotency-Key must not start with 'schedule:'")
    assert _jobs(mysql) == []


# --- faults ----------------------------------------------------------------------------------------
def test_with_mysql_down_the_routes_are_503s_and_a_sweep_skips_the_rule(settings, api):
    down = Runtime(replace(settings, mysql_url="mysql://root@127.0.0.1:1/jobs"))
    runtime_module.use(down)

    created = _create(api)
    listed = api.request("GET", "/schedules")
    report = down.sweeper.sweep()  # every rule's range fails: skipped until the next pass, nothing raised

    assert (created.status, listed.status) == (503, 503) and created.json["code"] == "ServiceUnavailable"
    assert report.schedules_fired == 0


def test_a_schedule_whose_insert_fails_stays_due_and_the_next_pass_fires_it_once(api, rt, mysql, monkeypatch):
    ids = [_create(api, overlap="allow").json["scheduleId"] for _ in range(3)]
    due = max(_z(api.request("GET", f"/schedules/{i}").json["nextRunAt"]) for i in ids)
    create, calls = rt.service.create_occurrence, []

    def second_fails(owner, template, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise errors.StoreUnavailable("MySQL: lost connection")
        return create(owner, template, **kwargs)

    monkeypatch.setattr(rt.service, "create_occurrence", second_fails)
    first = rt.schedules.fire_due(due - timedelta(seconds=30), limit=10)
    second = rt.schedules.fire_due(due - timedelta(seconds=20), limit=10)

    assert (first.fired, second.fired) == (2, 1)
    assert sorted(job["idempotency_key"].split(":")[1] for job in _jobs(mysql)) == sorted(ids)
    ran = {_row(mysql, i)["last_run_at"].replace(tzinfo=UTC) for i in ids}
    assert ran <= {due, due - timedelta(minutes=5)}  # made across a 5-minute boundary, one would be late


def test_firing_needs_no_redis(settings, api, mysql):
    schedule_id = _create(api).json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])
    no_redis = Runtime(replace(settings, redis_url="redis://127.0.0.1:1/0"))

    try:
        report = no_redis.schedules.fire_due(due - timedelta(seconds=30), limit=10)
    finally:
        no_redis.store.close()  # its connection would otherwise outlive the test

    assert report.fired == 1 and len(_jobs(mysql, schedule_id)) == 1


def test_a_high_priority_template_makes_high_priority_jobs(api, rt, mysql):
    schedule_id = _create(api, job={**SLEEP_JOB, "priority": "high"}, overlap="allow").json["scheduleId"]
    due = _z(api.request("GET", f"/schedules/{schedule_id}").json["nextRunAt"])

    rt.schedules.fire_due(due - timedelta(seconds=30), limit=10)

    [job] = _jobs(mysql, schedule_id)
    assert api.get(job["id"]).json["priority"] == "high"
    assert (
        _create(api, job={**SLEEP_JOB, "priority": "urgent"}).json["message"] == 'priority must be "high" or "normal"'
    )
