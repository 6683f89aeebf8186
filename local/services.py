"""Start and reach the services the system needs on one machine: moto's server, the queue, the schema."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
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


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM when the process that started it dies, even by SIGKILL, so a
    # killed runner leaves no orphan servers behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start a server process that dies with us, in its own session (a terminal's Ctrl-C reaches
    only us, and we stop our children last, after the work that needs them)."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)


def stop(proc: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """Terminate a child and wait for it; kill it if it will not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_for_port(port: int, proc: subprocess.Popen, what: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.05)


def ensure_installed(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` first where it is missing (as root)."""
    found = shutil.which(command) or (f"/usr/sbin/{command}" if os.path.exists(f"/usr/sbin/{command}") else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{command} is missing: install {package} (apt-get install {package})")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which(command) or f"/usr/sbin/{command}"


def start_redis(directory: Path, *args: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """A private redis-server on loopback (a free port unless given), keeping nothing on disk.

    Extra arguments may say `{port}`: with `--tls-port {port}` the server speaks TLS only.
    """
    binary = ensure_installed("redis-server", "redis-server")
    port = port or free_port()
    args = tuple(a.replace("{port}", str(port)) for a in args)
    listen = ["--port", "0"] if "--tls-port" in args else ["--port", str(port)]
    proc = spawn(
        [binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory), *args]
    )
    wait_for_port(port, proc, "redis-server")
    return proc, port


def start_mariadb(directory: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """A private MariaDB on a free loopback port, its data in `directory`; root has no password."""
    install = ensure_installed("mariadb-install-db", "mariadb-server")
    binary = ensure_installed("mariadbd", "mariadb-server")
    data = directory / "data"
    if not data.exists():
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ],
            check=True,
            capture_output=True,
        )
    port = free_port()
    proc = spawn(
        [
            binary,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={directory}/mysqld.sock",
            f"--pid-file={directory}/mysqld.pid",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-log-bin",
            *args,
        ]
    )
    wait_for_port(port, proc, "mariadbd")
    return proc, port


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
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/moto-api/")
    except TimeoutError:
        stop(proc)
        raise
    return proc, url


def sqs_client(endpoint_url: str | None, region: str = "us-east-1") -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)


def create_jobs_queue(
    sqs: Any, name: str, *, visibility_timeout: int = 60, max_receive_count: int | None = None
) -> str:
    """Create (or find) the jobs queue, with a dead-letter queue `<name>-dlq` when
    `max_receive_count` is given; returns the jobs queue's URL."""
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if max_receive_count is not None:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})[
            "QueueUrl"
        ]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        )
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
