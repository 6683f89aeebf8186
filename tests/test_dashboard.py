"""The web dashboard in a real browser (Debian's Chromium driven by Playwright) against the local runtime."""

import itertools
import os
import re
import shutil
import time
from collections import defaultdict

import pytest

from tests.support.runtime import ALICE, ROOT, LocalRuntime

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
JOB_POLL = re.compile(r"/jobs/([^/?]+)$")


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


def test_submit_a_job_and_watch_its_bar_reach_100_percent(page):
    polls, advice = defaultdict(list), {}

    def on_response(response):
        match = JOB_POLL.search(response.url)
        if match and response.request.method == "GET":
            polls[match.group(1)].append(time.monotonic())
            advice[match.group(1)] = response.headers.get("retry-after")

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

    # Polls of this job never came faster than the API's Retry-After (at least 1 s).
    gaps = [b - a for a, b in itertools.pairwise(polls[job_id])]
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


def test_cancel_a_running_job_and_see_cancelled(page):
    enter_key(page, ALICE)
    job_id = submit(page, "sleep", steps=300, stepMs=100)
    row = page.locator(f'tr[data-id="{job_id}"]')
    sync_api.expect(row.locator(".status")).to_have_text("RUNNING", timeout=15000)

    row.locator("button.cancel").click()

    sync_api.expect(row.locator(".status")).to_have_text("CANCELLED", timeout=15000)
    assert int(row.locator(".bar").get_attribute("aria-valuenow")) < 100


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
