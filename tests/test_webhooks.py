"""Completion webhooks (issue 19): one signed delivery per job end, retried, never lost, never sent
to an address the guard refuses.

Every delivery goes to a receiver on 127.0.0.1 through `LoopbackOnly`, a connector that cannot
connect anywhere else, so even a bug past the guard sends no packet off this machine.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import standardwebhooks
from jobs_client import verify_webhook

import app as app_module
from chalicelib.models import as_utc
from chalicelib.queue import DeliveryMessage
from chalicelib.webhooks import guard
from chalicelib.webhooks.delivery import Deliverer, Schedule
from chalicelib.webhooks.transport import Transport
from local import worker_process
from local.eventsource import EventSource
from tests.conftest import wait_until
from tests.support.webhooks import LoopbackOnly, Receiver

QUICK = {"steps": 1, "stepMs": 0}


@pytest.fixture
def settings(settings, sqs, run_id):
    """The tests' settings with a webhooks queue of this test, a secret prefix of its own, loopback
    and http allowed (as the local runtime allows them) and 1 s timeouts."""
    url = sqs.create_queue(QueueName=f"webhooks-{run_id}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield replace(
        settings,
        webhooks_queue_url=url,
        webhook_secret_prefix=f"test/{run_id}/{uuid.uuid4().hex[:8]}/",
        webhook_allow_http=True,
        webhook_allow_loopback=True,
        webhook_timeout_seconds=1,
    )
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def connector():
    return LoopbackOnly()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def make_deliverer(rt, connector, **options) -> Deliverer:
    """The runtime's delivery function, through the loopback-only connector, retrying at once."""
    options.setdefault("schedule", Schedule(first_seconds=0))
    deliverer = Deliverer(
        rt.store,
        rt.delivery_queue,
        rt.signing_secrets,
        rt.deliverer._results,
        rt.settings,
        transport=Transport(connect=connector),
        **options,
    )
    rt.deliverer = deliverer  # what app.deliver_webhooks runs
    return deliverer


@pytest.fixture
def deliverer(rt, connector) -> Deliverer:
    return make_deliverer(rt, connector)


@pytest.fixture
def hooks(rt, sqs, settings, deliverer) -> EventSource:
    """The SQS event source of the delivery function, fed from the test's webhooks queue."""
    return EventSource(sqs, settings.webhooks_queue_url, app_module.deliver_webhooks)


def finished(api, events, url, *, job_type="sleep", payload=None, key="key-a", **options) -> str:
    reply = api.submit(job_type, payload or QUICK, key=key, callbackUrl=url, **options)
    assert reply.status == 202, reply.json
    events.drain()
    return reply.json["jobId"]


def deliveries(api, job_id, key="key-a") -> list[dict]:
    reply = api.request("GET", f"/jobs/{job_id}/deliveries", key=key)
    assert reply.status == 200, reply.json
    return reply.json["deliveries"]


def webhook_id(api, job_id: str) -> str:
    """`msg_<job id>_<finishedAt in epoch ms>` of the job's current end."""
    finished = datetime.fromisoformat(api.get(job_id).json["finishedAt"])
    return f"msg_{job_id}_{int(finished.timestamp() * 1000)}"


def row(mysql, job_id) -> dict:
    mysql.commit()
    with mysql.cursor() as cur:
        cur.execute("SELECT status, callback_state, callback_due_at, deliveries FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


def queued(sqs, settings) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=settings.webhooks_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


# --- one delivery per job end -----------------------------------------------------------------------
def test_a_finished_job_is_delivered_once_signed_and_verifiable(api, events, hooks, receiver, sqs, settings):
    job_id = finished(api, events, receiver.url)
    secret = api.request("GET", "/webhook-secret").json["secret"]

    hooks.drain()
    hooks.drain()  # nothing more comes

    assert len(receiver.got) == 1
    got = receiver.got[0]
    assert got.path == "/hooks/jobs" and got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == webhook_id(api, job_id)
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    body = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert verify_webhook(got.headers, got.body, secret) == body
    view = api.get(job_id).json
    assert body["type"] == "job.completed" and body["timestamp"] == view["finishedAt"]
    assert body["data"]["jobId"] == job_id and body["data"]["status"] == "COMPLETED"
    assert body["data"]["result"] == view["result"]
    [attempt] = deliveries(api, job_id)
    assert (attempt["attempt"], attempt["statusCode"], attempt["error"], attempt["nextRetryAt"]) == (1, 200, None, None)
    assert queued(sqs, settings) == 0


def test_a_copy_of_the_message_delivers_nothing_more(api, events, hooks, receiver, rt):
    job_id = finished(api, events, receiver.url)
    hooks.drain()

    rt.delivery_queue.send(DeliveryMessage(job_id))  # SQS's at-least-once, or a sweeper's needless re-send
    rt.delivery_queue.send(DeliveryMessage(job_id, attempt=2))
    hooks.drain()

    assert len(receiver.got) == 1
    assert len(deliveries(api, job_id)) == 1


def test_failed_and_cancelled_jobs_are_delivered_with_their_type(api, events, hooks, receiver):
    failing = finished(
        api, events, receiver.url, job_type="probe", payload={"tag": "w", "steps": 2, "failAtStep": 1}, maxAttempts=1
    )
    cancelled = api.submit("sleep", QUICK, callbackUrl=receiver.url).json["jobId"]
    assert api.cancel(cancelled).status == 200
    events.drain()  # the cancelled job's message: dropped

    hooks.drain()

    kinds = {json.loads(d.body)["data"]["jobId"]: json.loads(d.body)["type"] for d in receiver.got}
    assert kinds == {failing: "job.failed", cancelled: "job.cancelled"}
    assert len(receiver.got) == 2


def test_a_retried_job_is_delivered_again_at_its_new_end(api, events, hooks, receiver, mysql):
    payload = {"tag": "w-retry", "steps": 2, "failAtStep": 2, "failTimes": 1}
    job_id = finished(api, events, receiver.url, job_type="probe", payload=payload, maxAttempts=1)
    hooks.drain()

    assert api.request("POST", f"/jobs/{job_id}/retry").status == 202
    left = row(mysql, job_id)
    assert (left["callback_state"], left["callback_due_at"], left["deliveries"]) == ("WAITING", None, None)
    events.drain()
    hooks.drain()

    assert [json.loads(d.body)["type"] for d in receiver.got] == ["job.failed", "job.completed"]
    first, second = (d.headers["webhook-id"] for d in receiver.got)  # a new id for the new end
    assert first != second and second == webhook_id(api, job_id) and first.startswith(f"msg_{job_id}_")
    assert json.loads(receiver.got[1].body)["data"]["previousError"].startswith("RuntimeError: probe failed")
    [attempt] = deliveries(api, job_id)  # the new end's: the attempts of the run before are not kept
    assert (attempt["attempt"], attempt["statusCode"]) == (1, 200)
    assert row(mysql, job_id)["callback_state"] == "DELIVERED"


def test_jobs_cancelled_in_bulk_are_delivered_with_their_type(api, events, hooks, receiver, mysql):
    job_ids = [api.submit("sleep", QUICK, callbackUrl=receiver.url).json["jobId"] for _ in range(2)]

    assert api.request("POST", "/jobs/cancel", body={"type": "sleep"}).json["cancelled"] == 2
    assert {row(mysql, job_id)["callback_state"] for job_id in job_ids} == {"QUEUED"}  # one UPDATE marked both
    hooks.drain()

    kinds = {json.loads(d.body)["data"]["jobId"]: json.loads(d.body)["type"] for d in receiver.got}
    assert kinds == dict.fromkeys(job_ids, "job.cancelled")


def test_a_job_without_callback_has_no_deliveries_and_queues_nothing(api, events, hooks, receiver, sqs, settings):
    job_id = finished(api, events, None)

    assert deliveries(api, job_id) == []
    assert queued(sqs, settings) == 0 and receiver.got == []


# --- retries ---------------------------------------------------------------------------------------
def test_500s_and_a_timeout_are_retried_with_the_same_webhook_id_then_delivered(api, events, hooks, receiver, settings):
    receiver.script = [500, 503, "hang", 200]
    receiver.hang_seconds = settings.webhook_timeout_seconds + 1
    job_id = finished(api, events, receiver.url)
    secret = api.request("GET", "/webhook-secret").json["secret"]

    wait_until(lambda: hooks.drain() == 0 and len(receiver.got) == 4, timeout=30)

    assert {d.headers["webhook-id"] for d in receiver.got} == {webhook_id(api, job_id)}
    assert verify_webhook(receiver.got[-1].headers, receiver.got[-1].body, secret)["data"]["jobId"] == job_id
    made = deliveries(api, job_id)
    assert [(d["attempt"], d["statusCode"]) for d in made] == [(1, 500), (2, 503), (3, None), (4, 200)]
    assert made[0]["error"] == "HTTP 500: no" and made[2]["error"].startswith("timed out after 1 s")
    assert all(d["nextRetryAt"] is not None for d in made[:3]) and made[3]["nextRetryAt"] is None


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_other_4xx_and_redirects_are_never_retried(api, events, hooks, receiver, mysql, sqs, settings, status):
    receiver.script = [status]
    job_id = finished(api, events, receiver.url)

    hooks.drain()

    assert len(receiver.got) == 1
    [attempt] = deliveries(api, job_id)
    assert attempt["statusCode"] == status and attempt["nextRetryAt"] is None
    assert row(mysql, job_id)["callback_state"] == "FAILED"
    assert queued(sqs, settings) == 0


def test_429_is_retried(api, events, hooks, receiver):
    receiver.script = [429, 200]
    job_id = finished(api, events, receiver.url)

    wait_until(lambda: hooks.drain() == 0 and len(receiver.got) == 2, timeout=20)

    assert [d["statusCode"] for d in deliveries(api, job_id)] == [429, 200]


def test_a_receiver_that_trickles_its_answer_is_cut_off_after_three_timeouts(connector):
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.2):  # a byte every 0.2 s: every read is quick, the answer never ends
            try:
                conn.sendall(b"a")
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    port = listener.getsockname()[1]
    target = guard.target(f"http://127.0.0.1:{port}/h", guard.Policy(allow_http=True, allow_loopback=True))
    started = time.monotonic()
    try:
        answer = Transport(connect=connector).post(target, guard.literal_address("127.0.0.1"), b"{}", {}, timeout=0.5)
    finally:
        stop.set()
        listener.close()

    assert answer.status is None and answer.error == "timed out: no whole answer within 1.5 s"
    assert 1.4 < time.monotonic() - started < 3


def test_the_retry_delays_grow_with_jitter_up_to_the_longest():
    import random

    schedule, rng = Schedule(first_seconds=5, longest_seconds=3600), random.Random(1)
    delays = [schedule.delay(n, rng) for n in range(1, 16)]

    for n, delay in enumerate(delays, start=1):
        ceiling = min(3600, 5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == 15  # jittered: no two alike


def test_given_up_after_the_retry_window_with_the_log_saying_so(
    api, events, rt, connector, receiver, sqs, settings, mysql, log_output
):
    receiver.script = [500]
    clock = [time.time()]
    make_deliverer(rt, connector, clock=lambda: clock[0], schedule=Schedule(first_seconds=2))
    hooks = EventSource(sqs, settings.webhooks_queue_url, app_module.deliver_webhooks)
    job_id = finished(api, events, receiver.url)
    ended = as_utc(row(mysql, job_id)["callback_due_at"])

    hooks.poll_once()  # attempt 1 at the end: 500, a retry queued for 1-2 s later
    clock[0] = (ended + timedelta(seconds=settings.webhook_retry_seconds - 0.5)).timestamp()
    # attempt 2, half a second before the window closes: 500, and no retry of 2-4 s fits in it
    wait_until(lambda: hooks.poll_once() == 0 and len(receiver.got) == 2, timeout=20)

    made = deliveries(api, job_id)
    assert [(d["statusCode"], d["nextRetryAt"] is None) for d in made] == [(500, False), (500, True)]
    assert row(mysql, job_id)["callback_state"] == "FAILED"
    assert len(receiver.got) == 2 and queued(sqs, settings) == 0
    logged = [json.loads(line) for line in log_output.getvalue().splitlines() if line.startswith("{")]
    [gave_up] = [line for line in logged if line["message"].startswith("webhook delivery given up")]
    assert gave_up["job_id"] == job_id and gave_up["attempt"] == 2 and gave_up["level"] == "WARNING"


def test_an_attempt_due_after_the_window_is_given_up_without_sending(
    api, events, rt, connector, receiver, sqs, settings, mysql
):
    clock = [time.time() + settings.webhook_retry_seconds + 60]  # the message waited past the window
    make_deliverer(rt, connector, clock=lambda: clock[0])
    hooks = EventSource(sqs, settings.webhooks_queue_url, app_module.deliver_webhooks)
    job_id = finished(api, events, receiver.url)

    hooks.drain()

    assert receiver.got == [] and connector.connected == []
    assert deliveries(api, job_id) == [] and row(mysql, job_id)["callback_state"] == "FAILED"


# --- never lost --------------------------------------------------------------------------------------
def test_a_worker_killed_right_after_the_final_write_still_delivers(api, rt, hooks, receiver, settings, mysql, sqs):
    job_id = api.submit("sleep", QUICK, callbackUrl=receiver.url).json["jobId"]
    proc = worker_process.start(settings, DIE_AFTER_FINAL_WRITE="1")
    try:
        assert proc.wait(timeout=60) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
    left = row(mysql, job_id)
    assert (left["status"], left["callback_state"]) == ("COMPLETED", "WAITING")  # ended, webhook not queued
    assert queued(sqs, settings) == 0

    fast = replace(settings, webhook_resend_seconds=0)
    swept = make_sweeper(rt, fast).sweep()
    again = make_sweeper(rt, fast).sweep()
    hooks.drain()

    assert (swept.webhooks_sent, again.webhooks_sent) == (1, 0)
    assert len(receiver.got) == 1 and json.loads(receiver.got[0].body)["data"]["jobId"] == job_id
    assert row(mysql, job_id)["callback_state"] == "DELIVERED"


def make_sweeper(rt, settings):
    from chalicelib.sweeper import Sweeper

    return Sweeper(rt.store, rt.hot, rt.queue, settings, objects=rt.objects, outbox=rt.outbox)


def test_a_refused_send_leaves_the_row_for_the_sweeper(api, events, rt, hooks, receiver, settings, mysql, monkeypatch):
    from chalicelib import errors
    from chalicelib.queue import DeliveryQueue

    send = DeliveryQueue.send

    def refuse(self, message, **kwargs):
        raise errors.QueueUnavailable("SQS: refused")

    monkeypatch.setattr(DeliveryQueue, "send", refuse)
    job_id = finished(api, events, receiver.url)
    assert row(mysql, job_id)["callback_state"] == "WAITING"
    monkeypatch.setattr(DeliveryQueue, "send", send)

    early = make_sweeper(rt, settings).sweep()  # the end is under a minute old: not yet
    due = make_sweeper(rt, replace(settings, webhook_resend_seconds=0)).sweep()
    hooks.drain()

    assert (early.webhooks_sent, due.webhooks_sent) == (0, 1)
    assert len(receiver.got) == 1


def test_secrets_manager_down_is_not_an_attempt_and_the_record_is_delivered_again(
    api, events, rt, hooks, receiver, mysql, monkeypatch
):
    from chalicelib import errors

    def down(owner):
        raise errors.DependencyUnavailable("Secrets Manager: cannot read it: EndpointConnectionError")

    monkeypatch.setattr(rt.signing_secrets, "keys", down)
    job_id = finished(api, events, receiver.url)
    messages = hooks.receive(wait_seconds=1)

    failed = hooks.invoke(messages)

    assert failed == [messages[0]["MessageId"]]  # left for SQS to deliver again
    assert receiver.got == [] and deliveries(api, job_id) == []
    assert row(mysql, job_id)["callback_state"] == "QUEUED"


def test_a_record_that_is_not_a_delivery_is_dropped(hooks, sqs, settings):
    sqs.send_message(QueueUrl=settings.webhooks_queue_url, MessageBody='{"jobId": "01M8TAX9ZSS9CBX5VG50VD0NM0"}')

    assert hooks.invoke(hooks.receive(wait_seconds=1)) == []
    assert queued(sqs, settings) == 0


def test_a_lost_retry_message_is_sent_again_by_the_sweeper(api, events, rt, hooks, receiver, settings, sqs, mysql):
    receiver.script = [500, 200]
    job_id = finished(api, events, receiver.url)
    hooks.poll_once()  # attempt 1: 500, the next one queued ...
    sqs.purge_queue(QueueUrl=settings.webhooks_queue_url)  # ... and lost
    assert row(mysql, job_id)["callback_state"] == "QUEUED"

    early = make_sweeper(rt, settings).sweep()
    lost = make_sweeper(rt, replace(settings, webhook_lost_seconds=0)).sweep()
    wait_until(lambda: hooks.drain() == 0 and len(receiver.got) == 2, timeout=20)

    assert (early.webhooks_lost, lost.webhooks_lost) == (0, 1)
    assert [d["statusCode"] for d in deliveries(api, job_id)] == [500, 200]


# --- the SSRF guard ----------------------------------------------------------------------------------
AWS_REFUSED = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f000001/hook",
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://0x7f000001/hook",
    "https://2130706433/hook",
    "https://0177.0.0.1/hook",
    "https://127.1/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:a9fe:a9fe]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://10.0.0.1/hook",
    "https://172.16.5.4/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://224.0.0.251/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[ff02::1]/hook",
    "https://0.0.0.0/hook",
    "https://[64:ff9b::a00:1]/hook",
    "https://[2002:7f00:1::]/hook",
]
MALFORMED = [
    "example.com/hook",
    "ftp://example.com/hook",
    "https://",
    "https://user:pw@example.com/hook",
    "https://exa mple.com/",
    "https://256.1.1.1/",
    "https://0999.0.0.1/",
    "https://[::1/",
    "https://example.com:99999/",
    "https://ex_ample.com/",
    "https://example.com/\u00e9",
    "https://" + "a" * 2050 + ".com/",
    42,
]


@pytest.fixture
def aws_mode(rt, settings):
    """The runtime as on AWS: https only, no loopback."""
    from chalicelib import runtime as runtime_module
    from chalicelib.runtime import Runtime

    runtime = Runtime(replace(settings, webhook_allow_http=False, webhook_allow_loopback=False))
    runtime_module.use(runtime)
    return runtime


@pytest.mark.parametrize("url", AWS_REFUSED)
def test_a_refused_address_in_any_spelling_is_a_400_at_submit_in_aws_mode(api, aws_mode, mysql, url):
    reply = api.submit("sleep", QUICK, callbackUrl=url)

    assert reply.status == 400 and reply.json["code"] == "InvalidRequest"
    assert "callbackUrl" in reply.json["message"]
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM jobs")
        assert cur.fetchone()["n"] == 0


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://169.254.169.254/", "instance-metadata"),
        ("http://0x7f000001/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://100.100.1.1/", "CGNAT"),
        ("http://239.1.1.1/", "multicast"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.1.2.3/", "private"),
    ],
)
def test_the_address_itself_is_refused_not_only_the_scheme(url, why):
    # http allowed, loopback not: the refusal names the range.
    with pytest.raises(Exception) as refused:
        guard.check_url(url, guard.Policy(allow_http=True, allow_loopback=False))
    assert why in refused.value.message


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_callback_url_is_a_400(api, url):
    reply = api.submit("sleep", QUICK, callbackUrl=url)

    assert reply.status == 400 and reply.json["code"] == "InvalidRequest"


def test_public_https_urls_are_accepted_at_submit_in_aws_mode(api, aws_mode):
    for url in ("https://hooks.example.com/jobs?x=1", "https://8.8.8.8:8443/h", "https://[2606:4700::1111]/h"):
        assert api.submit("sleep", QUICK, callbackUrl=url).status == 202, url


def test_inside_lambda_loopback_and_http_are_refused_whatever_is_configured():
    policy = guard.Policy.of(allow_http=True, allow_loopback=True, on_aws=True)

    assert policy == guard.Policy(allow_http=False, allow_loopback=False)


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery_before_any_connection(
    api, events, aws_mode, connector, sqs, settings, mysql, log_output
):
    asked = []

    def resolver(host, port):
        asked.append((host, port))
        return ["93.184.216.34", "10.0.0.1"]  # one public address does not save a private one

    make_deliverer(aws_mode, connector, resolver=resolver)
    hooks = EventSource(sqs, settings.webhooks_queue_url, app_module.deliver_webhooks)
    job_id = finished(api, events, "https://hooks.internal.example/jobs")

    hooks.drain()

    assert asked == [("hooks.internal.example", 443)]
    assert connector.connected == [] and connector.refused == []  # refused before any connection
    [attempt] = deliveries(api, job_id)
    assert attempt["statusCode"] is None and attempt["nextRetryAt"] is None
    assert attempt["error"] == "refused: the host resolves to a private address"  # no address shown
    assert row(mysql, job_id)["callback_state"] == "FAILED"
    assert queued(sqs, settings) == 0  # never retried
    assert "10.0.0.1" in log_output.getvalue()  # our log has it


@pytest.mark.parametrize("stored", ["http://127.0.0.1:9/h", "http://[::1]:9/h", "http://0x7f000001:9/h"])
def test_a_loopback_callback_stored_locally_is_refused_by_an_aws_mode_delivery(
    api, events, rt, connector, sqs, settings, stored
):
    job_id = finished(api, events, stored)  # accepted: this runtime allows loopback
    aws = replace(settings, webhook_allow_http=True, webhook_allow_loopback=False)
    deliverer = Deliverer(
        rt.store,
        rt.delivery_queue,
        rt.signing_secrets,
        rt.deliverer._results,
        aws,
        transport=Transport(connect=connector),
    )

    hooks = EventSource(
        sqs, settings.webhooks_queue_url, lambda event, context: deliverer.handle_batch(event["Records"])
    )
    hooks.drain()

    assert connector.connected == [] and connector.refused == []
    [attempt] = deliveries(api, job_id)
    assert attempt["error"] == "refused: the host resolves to a loopback address"


def test_a_name_that_does_not_resolve_is_retried(api, events, rt, connector, sqs, settings):
    def resolver(host, port):
        raise OSError("no such name")

    make_deliverer(rt, connector, resolver=resolver)
    hooks = EventSource(sqs, settings.webhooks_queue_url, app_module.deliver_webhooks)
    job_id = finished(api, events, "https://nowhere.example/h")

    hooks.poll_once()

    [attempt] = deliveries(api, job_id)
    assert attempt["error"] == "the host does not resolve (OSError)" and attempt["nextRetryAt"] is not None


# --- the routes ----------------------------------------------------------------------------------------
def test_deliveries_of_another_keys_job_are_404_and_a_bad_id_400(api, events, hooks, receiver):
    job_id = finished(api, events, receiver.url)
    hooks.drain()

    theirs = api.request("GET", f"/jobs/{job_id}/deliveries", key="key-b")
    bad = api.request("GET", "/jobs/nope/deliveries")
    unknown = api.request("GET", f"/jobs/{'7' + 'Z' * 25}/deliveries")

    assert (theirs.status, theirs.json["code"]) == (404, "JobNotFound")
    assert (bad.status, bad.json["code"]) == (400, "InvalidJobId")
    assert unknown.status == 404
    assert len(deliveries(api, job_id)) == 1


def test_each_client_has_its_own_secret_and_deliveries_are_signed_with_it(api, events, hooks, receiver):
    mine = api.request("GET", "/webhook-secret", key="key-a")
    again = api.request("GET", "/webhook-secret", key="key-a")
    theirs = api.request("GET", "/webhook-secret", key="key-b").json["secret"]
    job_id = finished(api, events, receiver.url, key="key-b")
    hooks.drain()

    assert mine.status == 200 and mine.json["secret"].startswith("whsec_")
    assert again.json == mine.json and theirs != mine.json["secret"]
    assert mine.headers["cache-control"] == "no-store"
    got = receiver.got[0]
    assert verify_webhook(got.headers, got.body, theirs)["data"]["jobId"] == job_id
    with pytest.raises(Exception, match="signature"):
        verify_webhook(got.headers, got.body, mine.json["secret"])


def test_after_a_rotation_deliveries_verify_with_the_new_and_the_old_secret(api, events, hooks, receiver, rt):
    old = api.request("GET", "/webhook-secret").json["secret"]
    new = rt.signing_secrets.rotate("key-a")
    job_id = finished(api, events, receiver.url)

    hooks.drain()

    got = receiver.got[0]
    assert api.request("GET", "/webhook-secret").json["secret"] == new != old
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert standardwebhooks.Webhook(secret).verify(got.body, got.headers)["data"]["jobId"] == job_id


# --- what a job with a callback costs ----------------------------------------------------------------------
def test_a_job_with_a_callback_costs_one_mysql_statement_more_in_the_worker(api, events, receiver, io_counts):
    plain = api.submit("sleep", QUICK).json["jobId"]
    io_counts.reset()
    events.drain()
    plain_writes = list(io_counts.mysql_writes)
    hooked_reply = api.submit("sleep", QUICK, callbackUrl=receiver.url)
    io_counts.reset()
    events.drain()

    assert hooked_reply.status == 202 and plain
    assert len(plain_writes) == 2  # start, final
    assert len(io_counts.mysql_writes) == 3  # start, final, the webhook marked queued
    assert "callback_state" in io_counts.mysql_writes[-1]


def test_a_submission_with_a_callback_is_still_one_insert(api, io_counts, receiver):
    io_counts.reset()
    reply = api.submit("sleep", QUICK, callbackUrl=receiver.url)

    assert reply.status == 202
    assert [s.split()[0] for s in io_counts.mysql_statements] == ["INSERT"]
