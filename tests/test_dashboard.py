"""The web dashboard in a real browser (Debian's Chromium driven by Playwright) against the local runtime."""

import itertools
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from jobs_client import Client

from local.run import BUCKET, sample_key
from tests.support.runtime import ALICE, DEMO, REAL_PLANS, ROOT, LocalRuntime

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As this machine's notes advise: without the background-networking flags Chromium keeps trying
# hosts this sandbox cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = ROOT / "test-output"
#: GET /jobs/{id}: the job id is the last segment of the path (models.parse_job_id owns its form).
JOB_GET = re.compile(r"/jobs/([^/?]+)$")
#: Requests that need a key, so the usage plan counts them (the page's own files and /openapi.json do not).
KEYED = re.compile(r"/(jobs|limits|uploads|batches)(/|$)")


def polled_ids(url: str) -> list[str] | None:
    """The ids a `GET /jobs?ids=` names, or None for any other request."""
    ids = parse_qs(urlsplit(url).query).get("ids")
    return ids[0].split(",") if ids else None


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Chromium is not installed (apt-get install chromium)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, run_settings):
    rt = LocalRuntime(tmp_path_factory.mktemp("dashboard"), run_settings, env={})
    yield rt
    rt.stop()


@pytest.fixture
def page(browser, runtime):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{runtime.url}/dashboard")
    yield page
    context.close()


def enter_key(page, key):
    page.fill("#api-key", key)
    page.click("#key-form button")


def submit(page, job_type, **payload):
    page.select_option("#job-type", job_type)
    for name, value in payload.items():
        page.fill(f"#payload-{name}", str(value))
    page.click("#submit-form button[type=submit]")
    sync_api.expect(page.locator("#notice")).to_contain_text("Submitted job")
    return page.locator("#notice").inner_text().split()[-1].rstrip(".")


def test_a_job_submitted_with_priority_high_is_marked_high_in_the_table_and_its_detail(page, runtime):
    enter_key(page, ALICE)
    page.select_option("#job-priority", "high")
    job_id = submit(page, "sleep", steps=1, stepMs=0)
    row = page.locator(f'tr[data-id="{job_id}"]')

    sync_api.expect(row.locator("td.col-type .priority")).to_have_text("high")
    sync_api.expect(row.locator(".status")).to_have_text("COMPLETED", timeout=15000)
    row.locator("td.col-id a").click()
    sync_api.expect(page.locator("#detail-fields")).to_contain_text("Priorityhigh")
    assert Client(runtime.url, ALICE).get(job_id).priority == "high"  # what the API stored
    page.select_option("#job-priority", "normal")
    page.click("#submit-form button[type=submit]")
    sync_api.expect(page.locator("#notice")).not_to_contain_text(job_id)  # the next job's notice
    plain = page.locator("#notice").inner_text().split()[-1].rstrip(".")
    assert Client(runtime.url, ALICE).get(plain).priority == "normal"
    sync_api.expect(page.locator(f'tr[data-id="{plain}"] td.col-type')).to_have_text("sleep")  # no mark


def test_submit_a_job_and_watch_its_bar_reach_100_percent(page):
    polls = []

    def on_response(response):
        ids = polled_ids(response.url)
        if ids is not None and response.request.method == "GET":
            polls.append((time.monotonic(), ids))

    page.on("response", on_response)
    enter_key(page, ALICE)
    job_id = submit(page, "sleep", steps=12, stepMs=400)
    row = page.locator(f'tr[data-id="{job_id}"]')

    sync_api.expect(row.locator(".status")).to_have_text("RUNNING", timeout=15000)
    sync_api.expect(row.locator(".status")).to_have_text("COMPLETED", timeout=30000)
    sync_api.expect(row.locator(".pct")).to_have_text("100%")
    assert row.locator(".bar").get_attribute("aria-valuenow") == "100"
    assert row.locator("button.cancel").count() == 0

    row.locator("td.col-id a").click()
    sync_api.expect(page.locator("#detail")).to_be_visible()
    sync_api.expect(page.locator("#detail-result")).to_contain_text('"sleptMs": 4800')
    sync_api.expect(page.locator("#detail-fields")).to_contain_text("1 of 3")  # attempts
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # The job was polled with the others in one GET /jobs?ids= per cycle, never faster than the
    # API's Retry-After (at least 1 s); its result came from one GET /jobs/{id} once it had ended.
    times = [at for at, ids in polls if job_id in ids]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 0.95, gaps


def test_a_local_file_is_uploaded_and_a_csv_stats_job_runs_on_it(page, tmp_path):
    # Given a CSV on the user's machine
    path = tmp_path / "figures.csv"
    path.write_bytes(b"a,b\n1,2\n3,4\n5,6\n")
    uploads = []
    page.on(
        "response",
        lambda r: uploads.append(r.status) if r.request.method == "POST" and "/jobs-local" in r.url else None,
    )
    enter_key(page, ALICE)

    # When they pick it in the form of a type that reads an input object, and submit
    page.select_option("#job-type", "csv-stats")
    page.set_input_files("#payload-file", str(path))
    page.click("#submit-form button[type=submit]")

    # Then it went to S3 through the presigned POST (the page's CSP let it), and the job completes on it
    sync_api.expect(page.locator("#notice")).to_contain_text("Submitted job", timeout=15000)
    job_id = page.locator("#notice").inner_text().split()[-1].rstrip(".")
    row = page.locator(f'tr[data-id="{job_id}"]')
    sync_api.expect(row.locator(".status")).to_have_text("COMPLETED", timeout=30000)
    assert uploads == [204]
    row.locator("td.col-id a").click()
    sync_api.expect(page.locator("#detail-result")).to_contain_text('"rows": 3')


def test_a_finished_jobs_detail_shows_its_webhook_deliveries(page, runtime):
    from tests.support.webhooks import Receiver

    receiver = Receiver(script=[503, 200])
    try:
        with Client(runtime.url, ALICE) as jobs:
            job = jobs.wait(jobs.submit("sleep", {"steps": 1, "stepMs": 0}, callback_url=receiver.url))
            plain = jobs.wait(jobs.submit("sleep", {"steps": 1, "stepMs": 0}))
            deadline = time.monotonic() + 60  # the retry comes 2.5-5 s after the 503
            while len(jobs.deliveries(job)) < 2:
                assert time.monotonic() < deadline, jobs.deliveries(job)
                time.sleep(0.2)
    finally:
        receiver.close()
    enter_key(page, ALICE)

    page.locator(f'tr[data-id="{job.id}"] td.col-id a').click()
    items = page.locator("#detail-deliveries li")
    sync_api.expect(items).to_have_count(2)
    sync_api.expect(items.nth(0)).to_contain_text("503 (HTTP 503: no); next retry ")
    sync_api.expect(items.nth(1)).to_contain_text("200 delivered")
    assert items.nth(0).get_attribute("class") == "failed" and not items.nth(1).get_attribute("class")
    page.locator(f'tr[data-id="{plain.id}"] td.col-id a').click()
    sync_api.expect(page.locator("#detail-result")).to_contain_text('"sleptMs": 0')
    sync_api.expect(page.locator("#detail-webhook")).to_be_hidden()  # no callback: no section


def test_a_finished_jobs_detail_read_while_throttled_is_read_again_after_retry_after(page, runtime):
    with Client(runtime.url, ALICE) as jobs:
        job = jobs.wait(jobs.submit("sleep", {"steps": 1, "stepMs": 0}))
    enter_key(page, ALICE)
    refused = []

    def throttle_once(route):
        if refused:
            return route.continue_()
        refused.append(route.request.url)
        route.fulfill(
            status=429, headers={"Retry-After": "1"}, json={"code": "TooManyRequests", "message": "slow down"}
        )

    page.route(f"**/jobs/{job.id}", throttle_once)
    page.locator(f'tr[data-id="{job.id}"] td.col-id a').click()
    sync_api.expect(page.locator("#detail-result")).to_contain_text("429")
    sync_api.expect(page.locator("#detail-result")).to_contain_text('"sleptMs": 0', timeout=10000)
    assert len(refused) == 1


def test_a_batch_shows_its_counts_bar_then_and_members_and_a_members_detail_its_batch(page, runtime):
    with Client(runtime.url, ALICE) as client:
        first = client.submit("sleep", {"steps": 1, "stepMs": 0})
        waiter = client.submit("sleep", {"steps": 1, "stepMs": 0}, depends_on=[first])
        submitted = client.submit_batch(
            [{"type": "sleep", "payload": {"steps": 2, "stepMs": 100}}] * 3, then={"type": "sleep", "payload": {}}
        )
    enter_key(page, ALICE)
    page.fill("#batch-id", submitted.batch_id)
    page.click("#batch-form button")

    sync_api.expect(page.locator("#batch-status")).to_have_text("COMPLETED", timeout=30000)
    sync_api.expect(page.locator("#batch-summary")).to_have_text("3 of 3 ended (3 completed)")
    sync_api.expect(page.locator("#batch-pct")).to_have_text("100%")
    sync_api.expect(page.locator("#batch-then")).to_have_text(f"Then: {submitted.then_job_id} COMPLETED")
    assert page.locator("#batch-members a").all_inner_texts() == submitted.job_ids
    sync_api.expect(page.locator("#batch-cancel")).to_be_disabled()

    page.click(f"#batch-members a >> text={submitted.job_ids[1]}")
    sync_api.expect(page.locator("#detail-id")).to_have_text(submitted.job_ids[1])
    sync_api.expect(page.locator("#detail-fields")).to_contain_text(f"Batch{submitted.batch_id}")
    page.fill("#batch-id", "")
    page.click(f"#detail-fields a >> text={submitted.batch_id}")
    sync_api.expect(page.locator("#batch-id")).to_have_value(submitted.batch_id)
    page.evaluate(f"showJob('{waiter.id}')")
    sync_api.expect(page.locator("#detail-fields")).to_contain_text(f"Depends on{first.id}")


def test_cancel_a_running_job_and_see_cancelled(page):
    enter_key(page, ALICE)
    job_id = submit(page, "sleep", steps=300, stepMs=100)
    row = page.locator(f'tr[data-id="{job_id}"]')
    sync_api.expect(row.locator(".status")).to_have_text("RUNNING", timeout=15000)

    row.locator("button.cancel").click()

    sync_api.expect(row.locator(".status")).to_have_text("CANCELLED", timeout=15000)
    assert int(row.locator(".bar").get_attribute("aria-valuenow")) < 100


def test_retry_a_failed_job_from_its_row_and_see_the_previous_error(page, runtime):
    with Client(runtime.url, ALICE) as jobs:
        failing = {"steps": 2, "stepMs": 0, "failAtStep": 2}
        failed = jobs.wait(jobs.submit("sleep", failing, max_attempts=1))
        done = jobs.wait(jobs.submit("sleep", {"steps": 1, "stepMs": 0}))
    enter_key(page, ALICE)
    row = page.locator(f'tr[data-id="{failed.id}"]')
    sync_api.expect(row.locator(".status")).to_have_text("FAILED")
    assert page.locator(f'tr[data-id="{done.id}"] button.retry').count() == 0  # only FAILED and CANCELLED

    row.locator("button.retry").click()

    sync_api.expect(page.locator("#notice")).to_contain_text(f"Job {failed.id} runs again.")
    sync_api.expect(row.locator(".status")).to_have_text("FAILED", timeout=15000)  # its payload fails again
    row.locator("td.col-id a").click()
    sync_api.expect(page.locator("#detail-fields")).to_contain_text("Previous error")
    sync_api.expect(page.locator("#detail-fields")).to_contain_text("failed at step 2")


def test_cancel_all_scheduled_jobs_of_a_type_from_the_list(page, runtime):
    with Client(runtime.url, ALICE) as jobs:
        later = [jobs.submit("sleep", {"steps": 1}, delay_seconds=600).id for _ in range(3)]
    page.on("dialog", lambda dialog: dialog.accept())
    enter_key(page, ALICE)
    button = page.locator("#cancel-matching")
    assert button.is_hidden()  # no type chosen: nothing to cancel in bulk

    page.select_option("#filter-type", "sleep")
    page.select_option("#filter-status", "SCHEDULED")
    sync_api.expect(button).to_have_text("Cancel all scheduled sleep jobs")
    button.click()

    sync_api.expect(page.locator("#notice")).to_contain_text("Cancelled 3 sleep jobs")
    with Client(runtime.url, ALICE) as jobs:
        assert {job.status.value for job in jobs.get_many(later)} == {"CANCELLED"}


def test_the_clients_plan_and_unfinished_jobs_are_shown_above_the_table(page):
    enter_key(page, ALICE)

    sync_api.expect(page.locator("#limits")).to_have_text(
        re.compile(r"Client alice, plan roomy: \d+ of 1000 unfinished jobs \(\d+ pending, \d+ running\), at most 100")
    )


def test_a_wrong_key_shows_the_403_message(page):
    enter_key(page, "not-a-key")
    sync_api.expect(page.locator("#notice")).to_contain_text("403")
    sync_api.expect(page.locator("#notice")).to_contain_text("refused")
    assert page.locator("main").is_hidden()


def test_throttling_shows_the_429_message(page):
    enter_key(page, "tight-local-key")  # burst of 3: the list takes one
    sync_api.expect(page.locator("main")).to_be_visible()
    for _ in range(4):
        page.click("#submit-form button[type=submit]")
    sync_api.expect(page.locator("#notice")).to_contain_text("429")


def test_it_fits_a_phone(browser, runtime):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{runtime.url}/dashboard")
    enter_key(page, ALICE)
    sync_api.expect(page.locator("main")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.locator("#submit-form button[type=submit]").is_visible()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-phone.png"), full_page=True)
    context.close()


def test_the_files_are_served_with_their_content_types(runtime):
    import urllib.request

    expected = {
        "/dashboard": "text/html",
        "/dashboard/dashboard.js": "text/javascript",
        "/dashboard/dashboard.css": "text/css",
    }
    for path, content_type in expected.items():
        with urllib.request.urlopen(runtime.url + path) as response:
            assert response.headers["Content-Type"].startswith(content_type), path
    with urllib.request.urlopen(runtime.url + "/dashboard") as response:
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


# --- under the real basic plan (infra/usage-plans.json: 5 requests a second, a burst of 10) ---------
@pytest.fixture(scope="module")
def basic_runtime(tmp_path_factory, run_settings):
    # Results over 100 bytes go to S3, so a csv-stats result is a link and a sleep result is inline.
    rt = LocalRuntime(
        tmp_path_factory.mktemp("dashboard-basic"), run_settings, env={"INLINE_RESULT_BYTES": "100"}, plans=REAL_PLANS
    )
    yield rt
    rt.stop()


def _recorded_page(browser, runtime):
    """A page of the demo client, and every keyed request it makes: (time, method, url, status)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = []
    page.on(
        "response",
        lambda r: (
            seen.append((time.monotonic(), r.request.method, r.url, r.status))
            if KEYED.search(urlsplit(r.url).path)
            else None
        ),
    )
    page.goto(f"{runtime.url}/dashboard")
    enter_key(page, DEMO)
    sync_api.expect(page.locator("main")).to_be_visible()
    return context, page, seen


def test_a_finished_jobs_detail_shows_its_result_inline_or_a_link_to_it(browser, basic_runtime):
    with Client(basic_runtime.url, DEMO) as jobs:
        inline = jobs.wait(jobs.submit("sleep", {"steps": 1, "stepMs": 0}))
        stored = jobs.wait(jobs.submit("csv-stats", {"bucket": BUCKET, "key": sample_key("demo")}))
    assert inline.result is not None and stored.result is None and stored.result_url  # as set up
    context, page, seen = _recorded_page(browser, basic_runtime)

    page.locator(f'tr[data-id="{inline.id}"] td.col-id a').click()
    sync_api.expect(page.locator("#detail-result")).to_have_text('{\n  "steps": 1,\n  "sleptMs": 0\n}')
    page.locator(f'tr[data-id="{stored.id}"] td.col-id a').click()
    link = page.locator("#detail-result a")
    sync_api.expect(link).to_have_text(f"Download the result ({stored.result_bytes} bytes)")

    assert urlsplit(link.get_attribute("href")).path == urlsplit(stored.result_url).path
    gets = [url for _, method, url, _ in seen if method == "GET" and JOB_GET.search(urlsplit(url).path)]
    assert sorted(urlsplit(url).path for url in gets) == sorted([f"/jobs/{inline.id}", f"/jobs/{stored.id}"])
    context.close()


def test_one_tab_with_20_active_jobs_stays_under_the_basic_plan_and_backs_off_on_429(browser, basic_runtime):
    # Given 20 active jobs of the demo client (the client library rides out the submissions' 429s)
    with Client(basic_runtime.url, DEMO) as jobs:
        active = [jobs.submit("sleep", {"steps": 600, "stepMs": 100}).id for _ in range(20)]
    time.sleep(2.5)  # the burst is back (10 tokens at 5 a second)

    # When one tab shows them for 10 s
    context, page, seen = _recorded_page(browser, basic_runtime)
    page.wait_for_timeout(10_000)
    calm = list(seen)

    # Then the gateway refused none of its requests: it kept under the plan...
    assert [status for *_, status in calm if status == 429] == []
    polls = [(at, polled_ids(url)) for at, method, url, _ in calm if polled_ids(url)]
    others = [urlsplit(url).path for _, _, url, _ in calm if not polled_ids(url)]
    # ...with one request per cycle for the 15 visible jobs (a page), none per job,
    visible = set(active[-15:])
    assert polls and all(set(ids) == visible for _, ids in polls)
    assert sorted(others) == ["/jobs", "/limits"]  # the list and the plan line, refreshed every 15 s
    # ...at most one a second (every Retry-After here is 1 s).
    assert len(polls) <= 11
    assert min(b - a for (a, _), (b, _) in itertools.pairwise(polls)) >= 0.95

    # When another user of the key spends its rate, a poll gets a 429...
    stop = threading.Event()

    def spend():
        while not stop.is_set():
            request = urllib.request.Request(f"{basic_runtime.url}/limits", headers={"x-api-key": DEMO})
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError:
                pass

    spender = threading.Thread(target=spend, daemon=True)
    spender.start()
    try:
        refused = _wait_for(
            page, lambda: [at for at, _, url, status in seen[len(calm) :] if polled_ids(url) and status == 429]
        )
    finally:
        stop.set()
        spender.join(10)
    sync_api.expect(page.locator("#notice")).to_contain_text("429")
    # ...and the next poll waits at least the 5 s back-off
    after = _wait_for(page, lambda: [at for at, _, url, _ in seen if polled_ids(url) and at > refused[0]], timeout=20)
    assert after[0] - refused[0] >= 4.95
    context.close()
    with Client(basic_runtime.url, DEMO) as jobs:
        for job_id in active:
            jobs.cancel(job_id)


def _wait_for(page, found, *, timeout: float = 15.0):
    """found()'s value once truthy; the page's events are delivered while Playwright waits, not in a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        page.wait_for_timeout(100)
    pytest.fail(f"not seen within {timeout}s")


def test_schedules_are_listed_with_their_next_run_and_paused_resumed_and_made_from_the_page(page, runtime):
    with Client(runtime.url, ALICE) as client:
        made = client.create_schedule("0 6 * * *", {"type": "sleep", "payload": {"steps": 1}}, timezone="Europe/Berlin")
    enter_key(page, ALICE)
    row = page.locator(f'#schedule-rows tr[data-id="{made.id}"]')

    sync_api.expect(row.locator(".col-cron")).to_have_text("0 6 * * *")
    sync_api.expect(row.locator(".col-zone")).to_have_text("Europe/Berlin")
    assert row.locator(".col-next").inner_text() not in ("", "-", "paused")
    row.locator("button.toggle").click()
    sync_api.expect(row.locator(".col-next")).to_have_text("paused")
    sync_api.expect(row.locator("button.toggle")).to_have_text("Resume")
    with Client(runtime.url, ALICE) as client:
        assert client.get_schedule(made).paused
    row.locator("button.toggle").click()
    sync_api.expect(row.locator("button.toggle")).to_have_text("Pause")

    page.select_option("#job-type", "sleep")
    page.fill("#schedule-cron", "*/10 * * * *")
    page.click("#schedule-form button[type=submit]")
    sync_api.expect(page.locator("#notice")).to_contain_text("Scheduled")
    new_id = page.locator("#notice").inner_text().split()[1].rstrip(":")
    sync_api.expect(page.locator(f'#schedule-rows tr[data-id="{new_id}"] .col-cron')).to_have_text("*/10 * * * *")
    page.locator(f'#schedule-rows tr[data-id="{new_id}"] button.delete').click()
    sync_api.expect(page.locator(f'#schedule-rows tr[data-id="{new_id}"]')).to_have_count(0)
    with Client(runtime.url, ALICE) as client:
        client.delete_schedule(made)
