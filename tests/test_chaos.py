"""The chaos run (bench/chaos.py) in its CI size: killed workers, duplicates, duplicated continuations,
jobs that crash their batch, an evicted checkpoint, a Redis flush and a Redis restart."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: `make test` runs it after the parallel part, by itself: it starts many processes of its own and
#: its timeouts assume the machine is not shared with another worker of the suite.
pytestmark = pytest.mark.alone


# The run has 300 s (subprocess timeout below); pytest-timeout's default 120 s cut it short on a loaded machine.
@pytest.mark.timeout(320)
def test_the_chaos_run_loses_nothing_and_finalises_nothing_twice(run_settings):
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    report = {line[:50].strip(): line[50:].strip() for line in result.stdout.splitlines() if line.startswith("  ")}

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report["submitted"] == "40"
    assert "lost" not in report and "WRONG result" not in report
    assert report["innocent FAILED"] == "0" and report["failed as designed (crashed its worker)"] == "1"
    assert report["finalised twice"] == "0" and report["duplicate sends by the sweeper"] == "0"
    assert int(report["chunks redone after kills"]) <= int(report["workers killed"])
    assert int(report["workers killed"]) >= 1 and report["Redis flushes"] == "1"
    assert int(report["workers killed by crashing jobs"]) >= 1 and int(report["continuations duplicated"]) >= 1
    assert report["Redis restarts"] == "1" and report["checkpoints evicted"] == "1"
