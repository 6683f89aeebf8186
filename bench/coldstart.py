"""Lambda cold start: what importing `app` costs, and how big the deployment package is.

Import time is `python -X importtime -c "import app"` in a fresh process (the median of several
runs), against `import redis` alone; the package is what `chalice package --stage dev` builds from
a build copy of the app (infra/deploy.py's, as tests/test_infra.py makes it).
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
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
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
    times = sorted(
        float(
            subprocess.run(
                [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    )
    return times[len(times) // 2]


def packaged_rows(zipped: Path, tmp: Path, runs: int) -> list[Row]:
    """Cold start as Lambda sees it: the package's own bytecode, then the same package without it."""
    unpacked = tmp / "unpacked"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(unpacked)
    with_pyc = packaged_import_ms(unpacked, "import app", runs)
    redis_ms = packaged_import_ms(unpacked, "import redis", runs)
    for pyc in unpacked.rglob("*.pyc"):
        pyc.unlink()
    without = packaged_import_ms(unpacked, "import app", runs)
    ratio = with_pyc / redis_ms
    fine = with_pyc <= 150 and ratio <= 1.2
    return [
        Row(
            "cold start: packaged import app, read-only (bytecode shipped)",
            f"{with_pyc:.0f} ms ({ratio:.2f}x import redis, {redis_ms:.0f} ms)",
            f"without the package's bytecode {without:.0f} ms; budget <= 150 ms and <= 1.2x redis",
            "ok" if fine else "MISS",
            {"app_ms": with_pyc, "redis_ms": redis_ms, "without_bytecode_ms": without, "ratio": ratio},
        )
    ]


def run(*, runs: int) -> list[Row]:
    total_ms, packages, modules = median_import("import app", runs)
    app_ms = packages["app"]
    redis_total_ms, redis_packages, _ = median_import("import redis", runs)
    redis_ms = redis_packages["redis"]
    top = sorted(
        ((ms, name) for name, ms in packages.items() if name not in STARTUP and not name.startswith("__editable__")),
        reverse=True,
    )[:6]
    heavy = sorted(name for name in MUST_NOT_IMPORT if name in modules)
    rows = [
        Row(
            "cold start: import app (-X importtime)",
            f"{app_ms:.0f} ms (process {total_ms:.0f} ms)",
            f"import redis alone {redis_ms:.0f} ms (process {redis_total_ms:.0f} ms)",
            "info",
            {"app_ms": app_ms, "total_ms": total_ms, "redis_ms": redis_ms, "redis_total_ms": redis_total_ms},
        ),
        Row(
            "cold start: top importers (cumulative)",
            ", ".join(f"{name} {ms:.0f}" for ms, name in top) + " ms",
            "",
            "info",
            {name: ms for ms, name in top},
        ),
        Row(
            "cold start: import app skips boto3, fastjsonschema, X-Ray",
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
