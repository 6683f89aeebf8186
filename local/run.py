"""Run the whole system on this machine, with the behaviour it has on AWS wherever it can be emulated.

- MySQL and Redis at MYSQL_URL / REDIS_URL; where nothing answers, private `mariadbd` and
  `redis-server` processes in a temporary directory (installed from Debian's packages if absent).
- The schema, migrated.
- moto's server for AWS (unless AWS_ENDPOINT_URL points at LocalStack or another moto), with the
  jobs queue, its dead-letter queue (redrive after --max-receive-count receives), an S3 bucket for
  inputs and one for results over INLINE_RESULT_BYTES (RESULTS_BUCKET, unless already set).
- The API on http://127.0.0.1:8000 behind an API Gateway emulation: API keys and usage plans from
  infra/usage-plans.json, the file infra/ deploys.
- The SQS -> Lambda event source mapping: long polls, batches of the worker's configured size,
  several invocations at once, a context with the function's configured timeout, partial batch
  responses honoured. The same for the dead-letter queue's handler. The high-priority queue (and
  its dead-letter queue) has a mapping of its own: its own pollers (--high-concurrency), so a
  backlog of normal jobs never delays a high one.
- The webhooks queue and the delivery function fed from it (completion webhooks), which may reach
  http:// and loopback receivers here (WEBHOOK_ALLOW_HTTP / WEBHOOK_ALLOW_LOOPBACK, on unless set):
  a receiver on this machine can take them. Each client's signing secret is made in moto's Secrets
  Manager and printed.
- The scheduled sweeper, invoked every --sweep-interval seconds (60, as the deployed schedule).
- The bucket is the service's input bucket (INPUT_BUCKETS, unless set), where `POST /uploads` puts
  files; a sample CSV in it for `csv-stats` jobs under every client's prefix
  (`inputs/<client>/samples/sales.csv`: a job reads only its owner's inputs).

Ctrl-C or SIGTERM stops everything within seconds; children die with this process even if it is
killed. Invocations still running are abandoned as a Lambda timeout would abandon them: their
messages come back after the visibility timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from chalicelib import errors, objects, runtime
from chalicelib.config import Settings
from chalicelib.runtime import Runtime
from chalicelib.schema import migrate
from chalicelib.store import connect_args
from chalicelib.tenants import DOCUMENT_KEY
from infra import usage_plans
from local import devserver, services
from local.eventsource import EventSource, LambdaContext, scheduled_event
from local.gateway import Keyring

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "jobs-local"
#: RESULTS_BUCKET of the local runtime when the environment names none.
RESULTS_BUCKET = "jobs-local-results"
#: The sample `csv-stats` input that `make run` puts under each client's prefix (`sample_key`).
SAMPLE_CSV = "samples/sales.csv"
log = logging.getLogger("local.run")


def worker_config(stage: str, name: str = "run_jobs") -> dict[str, int]:
    """A worker function's timeout and SQS batch size in .chalice/config.json's stage (`run_jobs`,
    or the high-priority `run_high_jobs`)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    function = stage_config.get("lambda_functions", {}).get(name, {})
    return {
        "timeout": function.get("lambda_timeout", stage_config.get("lambda_timeout", config.get("lambda_timeout", 60))),
        "batch_size": function.get("sqs_batch_size", 10),
    }


def _mysql(settings: Settings, workdir: Path, stack: contextlib.ExitStack) -> Settings:
    args = connect_args(settings.mysql_url)
    if services.listening(args["host"], args["port"]):
        return settings
    print(f"no MySQL at {args['host']}:{args['port']}: starting a private MariaDB", flush=True)
    proc, port = services.start_mariadb(workdir / "mariadb")
    stack.callback(services.stop, proc)
    return replace(settings, mysql_url=f"mysql://root@127.0.0.1:{port}/{args['database']}")


def _redis(settings: Settings, workdir: Path, stack: contextlib.ExitStack) -> Settings:
    parts = urlsplit(settings.redis_url)
    if services.listening(parts.hostname or "127.0.0.1", parts.port or 6379):
        return settings
    print(f"no Redis at {parts.hostname}:{parts.port}: starting a private redis-server", flush=True)
    (workdir / "redis").mkdir()
    proc, port = services.start_redis(workdir / "redis")
    stack.callback(services.stop, proc)
    return replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")


def sample_key(client: str) -> str:
    """Where the client finds the sample CSV: under its own prefix, the only one its jobs may read."""
    return objects.input_prefix(client) + SAMPLE_CSV


def _aws(settings: Settings, ns: argparse.Namespace, stack: contextlib.ExitStack) -> Settings:
    if settings.aws_endpoint_url is None:
        services.use_fake_aws_credentials()
        proc, endpoint = services.start_moto()
        stack.callback(services.stop, proc)
        settings = replace(settings, aws_endpoint_url=endpoint)
    sqs = services.sqs_client(settings.aws_endpoint_url, settings.aws_region)
    queue_url, high_url = (
        url
        or services.create_jobs_queue(
            sqs, name, visibility_timeout=ns.visibility_timeout, max_receive_count=ns.max_receive_count
        )
        for url, name in (
            (settings.jobs_queue_url, settings.jobs_queue_name),
            (settings.jobs_high_queue_url, settings.jobs_high_queue_name),
        )
    )
    webhooks_url = (
        settings.webhooks_queue_url
        or sqs.create_queue(QueueName=settings.webhooks_queue_name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    )
    import boto3

    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
    results_bucket = settings.results_bucket or RESULTS_BUCKET
    for name in (BUCKET, results_bucket):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
    sample = sample_csv()
    plans = usage_plans.load(ns.usage_plans)
    for client in plans.clients.values():
        s3.put_object(Bucket=BUCKET, Key=sample_key(client.name), Body=sample)
    # As the deploy does: the tenants document, where the local gateway's key ids are the client names.
    tenants = usage_plans.tenants_document(plans, {name: [name] for name in plans.clients})
    s3.put_object(Bucket=results_bucket, Key=DOCUMENT_KEY, Body=json.dumps(tenants).encode())
    return replace(
        settings,
        jobs_queue_url=queue_url,
        jobs_high_queue_url=high_url,
        webhooks_queue_url=webhooks_url,
        input_buckets=settings.input_buckets or (BUCKET,),
        results_bucket=results_bucket,
        work_bucket=settings.work_bucket or results_bucket,  # as infra/ deploys it: jobs/ of the results bucket
        tenants_url=settings.tenants_url or f"s3://{results_bucket}/{DOCUMENT_KEY}",
    )


def sample_csv(rows: int = 50_000) -> bytes:
    """A made-up sales table (1.3 MB), the same on every run."""
    import random

    rng = random.Random(7)
    lines = ["order,region,units,unit_price,discount"]
    for order in range(1, rows + 1):
        discount = "" if order % 10 == 0 else f"{rng.random() * 0.3:.2f}"
        lines.append(
            f"{order},{rng.choice(['north', 'south', 'east', 'west'])},{rng.randint(1, 40)},"
            f"{rng.uniform(0.5, 250):.2f},{discount}"
        )
    return ("\n".join(lines) + "\n").encode()


def _poll(source: EventSource, stop: threading.Event) -> None:
    """One concurrent invocation slot of the event source mapping."""
    while not stop.is_set():
        try:
            source.poll_once(wait_seconds=1)
        except Exception:
            if stop.is_set():
                return
            log.exception("worker invocation failed; its messages return after the visibility timeout")
            stop.wait(1)


def _sweep(sweep, interval: float, stop: threading.Event) -> None:
    """The sweeper's schedule: one invocation every `interval` seconds, as EventBridge would."""
    while not stop.wait(interval):
        try:
            sweep(
                scheduled_event("arn:aws:events:us-east-1:123456789012:rule/jobs-dev-sweep"),
                LambdaContext(timeout_seconds=60, function_name="jobs-dev-sweep"),
            )
        except Exception:
            log.exception("sweeper invocation failed; the next one runs in %s s", interval)


def _local_webhooks(settings: Settings, env=None) -> Settings:
    """http:// and loopback callbacks allowed, unless the environment says otherwise."""
    env = os.environ if env is None else env
    return replace(
        settings,
        webhook_allow_http=settings.webhook_allow_http or "WEBHOOK_ALLOW_HTTP" not in env,
        webhook_allow_loopback=settings.webhook_allow_loopback or "WEBHOOK_ALLOW_LOOPBACK" not in env,
    )


def _banner(
    url: str, settings: Settings, keyring: Keyring, ns: argparse.Namespace, secrets: dict[str, str] | None = None
) -> str:
    keys = "\n".join(f"          {value}   (client {name})" for name, value in keyring.values().items())
    signing = "\n".join(f"          {secret}   (client {name})" for name, secret in (secrets or {}).items())
    allowed = [
        what
        for what, on in (("http", settings.webhook_allow_http), ("loopback", settings.webhook_allow_loopback))
        if on
    ]
    first = next(iter(keyring.values().values()), "KEY")
    return (
        f"\nAPI:      {url}\nAPI keys (send one as the x-api-key header):\n{keys}\n"
        f"AWS:      {settings.aws_endpoint_url}   queue {settings.jobs_queue_url}   bucket {BUCKET}"
        f"   results {settings.results_bucket}\n"
        f"worker:   {ns.concurrency} concurrent invocations, batches of {ns.batch_size}, "
        f"timeout {ns.function_timeout} s; dead-letter handler; sweeper every {ns.sweep_interval:g} s\n"
        f"high:     queue {settings.jobs_high_queue_url}: {ns.high_concurrency} concurrent invocations of its own, "
        f"batches of {ns.high_batch_size}; its dead-letter handler\n"
        f"webhooks: queue {settings.webhooks_queue_url}; delivery function; callbackUrl may be "
        f"{' and '.join(allowed) or 'https to public addresses only'}\n"
        f"webhook signing secrets (GET /webhook-secret gives a client its own):\n{signing}\n"
        f"sample:   s3://{BUCKET}/{sample_key('<client>')} for csv-stats jobs\n\n"
        f"try:      curl -s -X POST {url}/jobs -H 'x-api-key: {first}' -H 'content-type: application/json' "
        f'-d \'{{"type": "sleep", "payload": {{"steps": 5}}}}\'\n'
        f"          JOBS_API_URL={url} JOBS_API_KEY={first} "
        f".venv/bin/jobs submit sleep --payload '{{\"steps\": 20}}' --wait\n"
        f"Ctrl-C stops everything.\n"
    )


def parse_args(argv=None) -> argparse.Namespace:
    worker, high = worker_config("dev"), worker_config("dev", "run_high_jobs")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker invocations at once (default 2)")
    parser.add_argument("--batch-size", type=int, default=worker["batch_size"])
    parser.add_argument(
        "--high-concurrency", type=int, default=1, help="invocations at once for the high-priority queue (default 1)"
    )
    parser.add_argument("--high-batch-size", type=int, default=high["batch_size"])
    parser.add_argument(
        "--function-timeout",
        type=float,
        default=worker["timeout"],
        help="seconds: the worker's Lambda timeout (default: .chalice/config.json, dev stage)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="seconds (default: six times the function timeout, as AWS advises)",
    )
    parser.add_argument("--max-receive-count", type=int, default=5, help="receives before the dead-letter queue")
    parser.add_argument("--sweep-interval", type=float, default=60.0, help="seconds between sweeper runs (default 60)")
    parser.add_argument("--usage-plans", default=str(usage_plans.DEFAULT_PATH))
    ns = parser.parse_args(argv)
    if ns.visibility_timeout is None:
        ns.visibility_timeout = int(6 * ns.function_timeout)
    return ns


def main(argv=None) -> None:
    ns = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    stop_requested = threading.Event()
    # From the first moment: a SIGTERM during start-up must still stop the children (ExitStack).
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set() or _raise_interrupt())
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="jobs-local-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        settings = Settings.from_env()
        settings = _redis(_mysql(settings, workdir, stack), workdir, stack)
        settings = _local_webhooks(_aws(settings, ns, stack))
        migrate(settings.mysql_url, create_database=True)

        # After the settings are final: app.py names its queues from them.
        from app import app, deliver_webhooks, fail_dead_letters, fail_high_dead_letters, run_high_jobs, run_jobs, sweep

        wiring = Runtime(settings)
        # A bad JOB_TYPES stops the start here, naming the module (errors.Misconfigured).
        job_types = wiring.job_types.names()
        runtime.use(wiring)
        keyring = Keyring.from_file(ns.usage_plans)
        # As the deploy does: a signing secret per client (the owner of a job is its client's name here).
        secrets = {name: wiring.signing_secrets.ensure(name) for name in keyring.values()}
        server = devserver.make_server(app, ns.host, ns.port, keyring=keyring)
        stack.callback(server.server.server_close)
        sqs = services.sqs_client(settings.aws_endpoint_url, settings.aws_region)
        pollers = []
        # Two event source mappings of the jobs queues, each with its own concurrency, each queue's
        # dead letters with their handler.
        for prefix, url, handler, dlq_name, dead_handler, concurrency, batch_size in (
            (
                "",
                settings.jobs_queue_url,
                run_jobs,
                settings.jobs_dlq_name,
                fail_dead_letters,
                ns.concurrency,
                ns.batch_size,
            ),
            (
                "high-",
                settings.jobs_high_queue_url,
                run_high_jobs,
                settings.jobs_high_dlq_name,
                fail_high_dead_letters,
                ns.high_concurrency,
                ns.high_batch_size,
            ),
        ):
            source = EventSource(sqs, url, handler, batch_size=batch_size, function_timeout=ns.function_timeout)
            pollers += [
                threading.Thread(target=_poll, args=(source, stop), name=f"{prefix}invocation-{i}", daemon=True)
                for i in range(concurrency)
            ]
            dlq_url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
            dead_letters = EventSource(sqs, dlq_url, dead_handler, batch_size=10, function_timeout=60)
            pollers.append(
                threading.Thread(target=_poll, args=(dead_letters, stop), name=f"{prefix}dead-letters", daemon=True)
            )
        webhooks = EventSource(sqs, settings.webhooks_queue_url, deliver_webhooks, batch_size=10, function_timeout=60)
        pollers.append(threading.Thread(target=_poll, args=(webhooks, stop), name="webhooks", daemon=True))
        pollers.append(
            threading.Thread(target=_sweep, args=(sweep, ns.sweep_interval, stop), name="sweeper", daemon=True)
        )
        for poller in pollers:
            poller.start()
        stack.callback(stop.set)

        def shutdown(*_):
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        print(_banner(f"http://{ns.host}:{ns.port}", settings, keyring, ns, secrets), flush=True)
        print(f"job types: {', '.join(job_types)}", flush=True)
        server.serve_forever()
        stop.set()
        deadline = time.monotonic() + 1.5  # a long poll ends within a second; a running job is abandoned
        for poller in pollers:
            poller.join(timeout=max(0.0, deadline - time.monotonic()))
    print("stopped", flush=True)


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except errors.Misconfigured as exc:
        print(f"jobs: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(1)
