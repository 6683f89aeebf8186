"""Lambda cold start: what a function imports before its first answer, and how big the package is.

A function's cold start is `import app` (what Lambda's init runs) and the modules its first event
loads: the services it builds (runtime.py imports each on first use, and nothing connects), so the
API function never loads the worker's modules nor the worker the routes'. Import time is
`python -X importtime` of that in a fresh process (the median of several runs), against `import
redis` alone; the package is what `chalice package --stage dev` builds from a build copy of the app
(infra/deploy.py's, as tests/test_infra.py makes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.env import ROOT, Row

CHALICE = str(Path(sys.executable).with_name("chalice"))
#: What the API and worker functions must never import at cold start (boto3: only to send a job).
# (Powertools imports botocore's bare __init__, about 0.5 ms, for its user agent: botocore.session,
# the heavy part, is what boto3 would bring.)
MUST_NOT_IMPORT = ("boto3", "botocore.session", "fastjsonschema", "aws_xray_sdk")
#: What each function imports before it answers its first event (`app.runtime.get()` builds nothing
#: that connects).
FUNCTIONS = {
    "API": "import app; app.runtime.get().service",
    "worker": "import app; app.runtime.get().worker",
}
#: The libraries every function's first event needs, whatever our code does: its Redis and MySQL clients.
LIBRARIES = "import redis, pymysql"
#: Imported by every Python process before the statement runs.
STARTUP = {"site", "encodings", "app", "_frozen_importlib_external", "zipimport", "codecs", "io", "abc"}
#: What must never be in the package: boto3 ships with Lambda's runtime; the rest is for tests.
MUST_NOT_SHIP = (
    *("boto3/", "botocore/", "local/", "tests/", "bench/", "infra/", "moto/", "pytest/"),
    # The Python client and httpx: for callers of the API, never the API itself. (standardwebhooks,
    # the client's other dependency, ships: the delivery function signs webhooks with it.)
    *("client/", "jobs_client/", "httpx/"),
)


def import_times(statement: str) -> tuple[float, dict[str, float], set[str]]:
    """Total milliseconds, cumulative ms of each top-level package, and every module imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    total, packages, modules = 0.0, {}, set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        name = name.strip()
        total += int(self_us)
        modules.add(name)
        if "." not in name and name not in packages:
            packages[name] = int(cumulative_us) / 1000
    return total / 1000, packages, modules


def median_import(statement: str, runs: int) -> tuple[float, dict[str, float], set[str]]:
    results = sorted((import_times(statement) for _ in range(runs)), key=lambda r: r[0])
    return results[len(results) // 2]


def package(tmp: Path) -> Path:
    """`chalice package --stage dev` of a build copy of the app; returns the deployment zip."""
    from infra import deploy

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    deploy.prepare_build_dir(ROOT, tmp / "app", config)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run(
        [CHALICE, "--project-dir", str(tmp / "app"), "package", "--stage", "dev", str(tmp / "out")],
        check=True,
        env=env,
        capture_output=True,
    )
    return tmp / "out" / "deployment.zip"


def packaged_import_ms(unpacked: Path, statement: str, runs: int) -> float:
    """Median ms of `statement` in a clean interpreter (-S: the stdlib and the package, nothing else)
    on the unzipped package, writing no bytecode (PYTHONDONTWRITEBYTECODE: Lambda's read-only disk)."""
    code = f"import time; t = time.perf_counter(); {statement}; print((time.perf_counter() - t) * 1000)"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(unpacked), "PYTHONDONTWRITEBYTECODE": "1"}
    # In the package's directory, as Lambda runs in /var/task: `-c` puts the working directory first
    # on sys.path, and anywhere else `import app` would find another copy of the app.
    run = [sys.executable, "-S", "-c", code]
    times = sorted(
        float(subprocess.run(run, cwd=unpacked, env=env, capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    )
    return times[len(times) // 2]


def packaged_rows(zipped: Path, tmp: Path, runs: int) -> list[Row]:
    """Cold start as Lambda sees it: each function's, on the package's own bytecode; the API's again
    without it."""
    unpacked = tmp / "unpacked"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(unpacked)
    redis_ms = packaged_import_ms(unpacked, "import redis", runs)
    init_ms = packaged_import_ms(unpacked, "import app", runs)
    ratio = init_ms / redis_ms
    rows = [
        Row(
            "cold start, Lambda's init: packaged `import app`, read-only (bytecode shipped)",
            f"{init_ms:.0f} ms ({ratio:.2f}x import redis, {redis_ms:.0f} ms)",
            "budget <= 150 ms and <= 1.2x redis",
            "ok" if init_ms <= 150 and ratio <= 1.2 else "MISS",
            {"ms": init_ms, "redis_ms": redis_ms, "ratio": ratio},
        )
    ]
    # A function's first event loads its clients' libraries too: redis-py and PyMySQL are its floor.
    floor_ms = packaged_import_ms(unpacked, LIBRARIES, runs)
    for function, statement in FUNCTIONS.items():
        ms = packaged_import_ms(unpacked, statement, runs)
        rows.append(
            Row(
                f"cold start, {function} function: init and its first event's imports, packaged, read-only",
                f"{ms:.0f} ms ({ms / redis_ms:.2f}x import redis; {ms - floor_ms:+.0f} ms over its libraries)",
                f"{statement}; `{LIBRARIES}` alone {floor_ms:.0f} ms",
                "info",
                {"ms": ms, "redis_ms": redis_ms, "libraries_ms": floor_ms},
            )
        )
    for pyc in unpacked.rglob("*.pyc"):
        pyc.unlink()
    without = packaged_import_ms(unpacked, FUNCTIONS["API"], runs)
    rows.append(
        Row(
            "cold start, API function: packaged, read-only, without bytecode",
            f"{without:.0f} ms",
            "what compileall in infra/bytecode.py saves",
            "info",
            {"ms": without},
        )
    )
    return rows


def run(*, runs: int) -> list[Row]:
    redis_total_ms, redis_packages, _ = median_import("import redis", runs)
    redis_ms = redis_packages["redis"]
    rows = []
    for function, statement in FUNCTIONS.items():
        total_ms, packages, modules = median_import(statement, runs)
        shown = (name for name in packages if name not in STARTUP and not name.startswith("__editable__"))
        top = sorted(((packages[name], name) for name in shown), reverse=True)[:6]
        heavy = sorted(name for name in MUST_NOT_IMPORT if name in modules)
        ours = sorted(name for name in modules if name.startswith("chalicelib."))
        rows += [
            Row(
                f"cold start: {function} function's imports (-X importtime)",
                f"{total_ms:.0f} ms, {len(ours)} of our modules",
                f"import redis alone {redis_ms:.0f} ms (process {redis_total_ms:.0f} ms)",
                "info",
                {"total_ms": total_ms, "redis_ms": redis_ms, "redis_total_ms": redis_total_ms, "ours": ours},
            ),
            Row(
                f"cold start: {function} function's top importers (cumulative)",
                ", ".join(f"{name} {ms:.0f}" for ms, name in top) + " ms",
                "",
                "info",
                {name: ms for ms, name in top},
            ),
            Row(
                f"cold start: {function} function skips boto3, fastjsonschema, X-Ray",
                "yes" if not heavy else f"no: {', '.join(heavy)}",
                "budget: nothing a route does not need",
                "ok" if not heavy else "MISS",
                {"imported": heavy},
            ),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        zipped = package(Path(tmp))
        rows += packaged_rows(zipped, Path(tmp), runs)
        with zipfile.ZipFile(zipped) as archive:
            infos = archive.infolist()
        names = [i.filename for i in infos]
        unpacked = sum(i.file_size for i in infos)
        shipped = sorted({p.rstrip("/") for p in MUST_NOT_SHIP if any(n.startswith(p) for n in names)})
        rows += [
            Row(
                "deployment package (chalice package --stage dev)",
                f"{zipped.stat().st_size / 1e6:.1f} MB zipped",
                f"{unpacked / 1e6:.1f} MB unpacked, {len(names)} files",
                "info",
                {"zipped": zipped.stat().st_size, "unpacked": unpacked, "files": len(names)},
            ),
            Row(
                "deployment package leaves out boto3 and test-only code",
                "yes" if not shipped else f"no: {', '.join(shipped)}",
                "budget: runtime dependencies only",
                "ok" if not shipped else "MISS",
                {"shipped": shipped},
            ),
        ]
    return rows
