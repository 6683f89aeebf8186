"""The local runtime (`python -m local.run`) in a child process, for tests that drive it over HTTP."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from local import services

ROOT = Path(__file__).resolve().parents[2]
JOB_LIMITS = {"maxActiveJobs": 1000, "maxRunningJobs": 100, "maxTimeoutSeconds": 604800}
PLANS = {
    "plans": {
        "roomy": {"rateLimit": 1000, "burstLimit": 1000, "quota": None, **JOB_LIMITS},
        "tight": {"rateLimit": 0.5, "burstLimit": 3, "quota": None, **JOB_LIMITS},  # a token every 2 s
        "quota": {"rateLimit": 1000, "burstLimit": 1000, "quota": {"limit": 5, "period": "DAY"}, **JOB_LIMITS},
    },
    "clients": {
        "alice": {"plan": "roomy"},
        "bob": {"plan": "roomy"},
        "tight": {"plan": "tight"},
        "counted": {"plan": "quota"},
    },
}
ALICE, BOB = "alice-local-key", "bob-local-key"
#: The usage plans `make run` and `make deploy` use, with the `demo` client on the `basic` plan.
REAL_PLANS = ROOT / "infra" / "usage-plans.json"
DEMO = "demo-local-key"


def call(url, method="GET", path="/jobs", *, key=ALICE, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(url + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(url, job_id, status, *, key=ALICE, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, job = call(url, path=f"/jobs/{job_id}", key=key)
        if job.get("status") == status:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} not {status} within {timeout}s: {job}")


class LocalRuntime:
    """`python -m local.run` in a child process, as `make run` starts it."""

    def __init__(
        self, tmp: Path, run_settings, *, env: dict[str, str], args: list[str] = (), plans: Path | None = None
    ):
        """`plans`: a usage-plans file (REAL_PLANS: the one infra/ deploys); by default the test PLANS."""
        if plans is None:
            plans = tmp / "usage-plans.json"
            plans.write_text(json.dumps(PLANS))
        self.port = services.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "runtime.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.run", "--port", str(self.port), "--usage-plans", str(plans), *args],
            cwd=ROOT,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "MYSQL_URL": run_settings.mysql_url,
                "REDIS_PREFIX": f"{run_settings.redis_prefix}rt:{uuid.uuid4().hex[:6]}:",
                "JOBS_QUEUE_NAME": f"jobs-{uuid.uuid4().hex[:8]}",
                **env,
            },
        )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the local runtime did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return call(self.url, path="/health", key=None)[0] == 200
        except OSError:
            return False

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        """Stop it and wait for its children too: they hold connections to the run's database,
        which the next test file may count (tests/test_connections.py)."""
        children = self.children() if self.proc.poll() is None else []
        services.stop(self.proc)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (a zombie has closed its sockets)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
