"""Start and reach the services the system needs on one machine: moto's server, the queue, the schema."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

#: Credentials moto accepts; never real ones.
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def use_fake_aws_credentials() -> None:
    """Give boto3 moto's dummy credentials, unless real ones are configured."""
    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 20.0) -> None:
    """Wait until something answers HTTP at `url` (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered at {url} within {timeout}s") from None
            time.sleep(0.1)


def start_moto(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Run moto's server on loopback as a child process; returns it and its endpoint URL."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # Its own session: a Ctrl-C in the terminal reaches our process, which stops moto last.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/moto-api/")
    except TimeoutError:
        proc.kill()
        raise
    return proc, url


def sqs_client(endpoint_url: str | None, region: str = "us-east-1") -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)


def create_jobs_queue(sqs: Any, name: str, *, visibility_timeout: int = 60) -> str:
    """Create (or find) the jobs queue; returns its URL."""
    reply = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)})
    return reply["QueueUrl"]
