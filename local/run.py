"""Run the system on this machine: the API on http://127.0.0.1:8000 and a worker fed from the queue.

MySQL and Redis are the ones at MYSQL_URL / REDIS_URL (local defaults); AWS comes from moto's server,
started here unless AWS_ENDPOINT_URL points somewhere already (a running moto or LocalStack).
Ctrl-C stops everything.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import replace

from chalicelib import runtime
from chalicelib.config import Settings
from chalicelib.runtime import Runtime
from chalicelib.schema import migrate
from local import devserver, services
from local.eventsource import EventSource

DEV_KEY = "dev-key"
log = logging.getLogger("local.run")


def _feed_worker(source: EventSource, stop: threading.Event) -> None:
    """The event source mapping: long-poll the queue, invoke the worker, until told to stop."""
    while not stop.is_set():
        try:
            source.poll_once(wait_seconds=1)
        except Exception:
            if stop.is_set():
                return
            log.exception("worker invocation failed; its messages return after the visibility timeout")
            stop.wait(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    moto = None
    settings = Settings.from_env()
    if settings.aws_endpoint_url is None:
        services.use_fake_aws_credentials()
        moto, endpoint = services.start_moto()
        settings = replace(settings, aws_endpoint_url=endpoint)
    sqs = services.sqs_client(settings.aws_endpoint_url, settings.aws_region)
    if not settings.jobs_queue_url:
        settings = replace(settings, jobs_queue_url=services.create_jobs_queue(sqs, settings.jobs_queue_name))
    applied = migrate(settings.mysql_url, create_database=True)
    log.info("schema: %s", ", ".join(applied) or "current")

    from app import app, run_jobs  # after the settings are final

    runtime.use(Runtime(settings))
    server = devserver.make_server(app, ns.host, ns.port)
    stop = threading.Event()
    worker = threading.Thread(target=_feed_worker, args=(EventSource(sqs, settings.jobs_queue_url, run_jobs), stop),
                              name="worker", daemon=True)
    worker.start()

    def shutdown(*_):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    url = f"http://{ns.host}:{ns.port}"
    print(f"\nAPI:      {url}\nAPI key:  {DEV_KEY}   (send it as the x-api-key header)\n"
          f"AWS:      {settings.aws_endpoint_url}\nqueue:    {settings.jobs_queue_url}\n\n"
          f"try:      curl -s -X POST {url}/jobs -H 'x-api-key: {DEV_KEY}' "
          f"-H 'content-type: application/json' -d '{{\"type\": \"sleep\", \"payload\": {{\"steps\": 5}}}}'\n"
          f"Ctrl-C stops everything.\n", flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()
        worker.join(timeout=5)
        server.server.server_close()
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)


if __name__ == "__main__":
    main()
