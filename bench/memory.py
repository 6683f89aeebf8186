"""Peak memory of one `csv-stats` chunk by chunk size, each measured in a fresh process.

The input is a CSV of short lines (`id,amount,label`, about 20 bytes a line; in the full run also
3-byte lines, the shape of issue 15's 1,447 MiB chunk) in moto's S3. A child process per size does
what the worker Lambda does for a chunk: it reads the range through the worker's ObjectStore and
runs `CsvStats.step`. It warms up first (boto3 client, a small chunk), then resets its peak RSS
(`/proc/self/clear_refs`), runs one chunk and reports its peak (`VmHWM`) minus its RSS just before
the chunk. The budget is a quarter of the worker function's memory (`.chalice/config.json`).

`python -m bench.memory ENDPOINT BUCKET KEY CHUNK_BYTES` is the child: it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
#: The line shapes measured: name -> (header, one line from its number).
SHAPES = {
    "short lines": ("id,amount,label\n", lambda i: f"{i},{(i * 7919) % 100000 / 100:.2f},w{i % 50}\n"),
    "3-byte lines": ("n\n", lambda i: f"{i % 90 + 10}\n"),
}


def worker_memory_mib() -> int:
    """The worker function's memory in the dev stage (Lambda's "MB" are MiB)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return int(config["stages"]["dev"]["lambda_functions"]["run_jobs"]["lambda_memory_size"])


def make_csv(shape: str, size: int) -> bytes:
    """At least `size` bytes of the shape's lines, header first."""
    header, line = SHAPES[shape]
    parts, total, i = [header], len(header), 0
    while total < size:
        text = line(i)
        parts.append(text)
        total += len(text)
        i += 1
    return "".join(parts).encode()


def run(env: Any, *, chunk_mib: list[int], shapes_at_max: bool) -> list[Any]:
    """One row per chunk size of short lines (and, if `shapes_at_max`, 3-byte lines at the maximum)."""
    import boto3

    from chalicelib.jobs.csv_stats import MAX_CHUNK_BYTES

    s3 = boto3.client("s3", endpoint_url=env.moto_url, region_name="us-east-1")
    bucket = f"bench-memory-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    budget = worker_memory_mib() / 4
    cases = [("short lines", mib) for mib in chunk_mib]
    if shapes_at_max:
        cases.append(("3-byte lines", MAX_CHUNK_BYTES // MIB))
    rows = []
    try:
        for shape in dict.fromkeys(shape for shape, _ in cases):
            size = max(mib for s, mib in cases if s == shape) * MIB
            key = f"inputs/bench-key/{shape.replace(' ', '-')}.csv"
            s3.put_object(Bucket=bucket, Key=key, Body=make_csv(shape, size + 4096))
            for mib in (m for s, m in cases if s == shape):
                rows.append(_row(shape, mib, measure(env.moto_url, bucket, key, mib * MIB), budget, MAX_CHUNK_BYTES))
            s3.delete_object(Bucket=bucket, Key=key)
    finally:
        s3.delete_bucket(Bucket=bucket)
    return rows


def _row(shape: str, mib: int, found: dict[str, Any], budget: float, maximum: int) -> Any:
    from bench.env import Row

    peak = found["peak_kib"] / 1024
    allowed = mib * MIB <= maximum
    reference = f"budget {budget:g} MiB (a quarter of the worker's {budget * 4:g} MB)"
    if not allowed:
        reference += f"; over MAX_CHUNK_BYTES ({maximum // MIB} MiB): refused at submit"
    return Row(
        f"csv-stats chunk of {mib} MiB, {shape}: peak RSS over baseline",
        f"{peak:.1f} MiB (x{peak / mib:.2f} the chunk), {found['seconds']:.2f} s",
        reference,
        ("ok" if peak <= budget else "MISS") if allowed else "info",
        {"chunk_mib": mib, "shape": shape, "peak_mib": peak, "budget_mib": budget, **found},
    )


def measure(endpoint: str, bucket: str, key: str, chunk_bytes: int) -> dict[str, Any]:
    """One chunk of `chunk_bytes` in a fresh child process: its peak RSS over its baseline, and time."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", endpoint, bucket, key, str(chunk_bytes)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_kib(*names: str) -> dict[str, int]:
    """Fields of /proc/self/status, in KiB."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in names:
                found[name] = int(value.split()[0])
    return found


def child(endpoint: str, bucket: str, key: str, chunk_bytes: int) -> dict[str, Any]:
    """Run one chunk as the worker would, after a warm-up; its peak RSS over the RSS before it."""
    import gc
    import logging

    from chalicelib.jobs import JobContext
    from chalicelib.jobs.csv_stats import CsvStats
    from chalicelib.objects import ObjectStore, connect
    from local import services

    services.use_fake_aws_credentials()
    store = ObjectStore(lambda: connect(endpoint_url=endpoint, region="us-east-1"))
    objects = store.scoped(owner="bench-key", job_id="01BENCHMEMORY0000000000000", input_buckets=(), work_bucket=None)
    ctx = JobContext(job_id="01BENCHMEMORY0000000000000", owner="bench-key", objects=objects, log=logging.getLogger())
    job_type = CsvStats()

    def payload(size: int) -> dict[str, Any]:
        return {"bucket": bucket, "key": key, "chunkBytes": size, "delimiter": ","}

    job_type.step(payload(64 * 1024), job_type.start(payload(64 * 1024), ctx), ctx)  # warm
    state = job_type.start(payload(chunk_bytes), ctx)
    gc.collect()
    baseline = _status_kib("VmRSS")["VmRSS"]
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak RSS (VmHWM) starts again from the RSS now
    started = time.perf_counter()
    step = job_type.step(payload(chunk_bytes), state, ctx)
    json.dumps(step.state)  # the worker writes it as the checkpoint
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")["VmHWM"]
    return {"baseline_kib": baseline, "peak_kib": peak - baseline, "seconds": seconds, "done": step.done}


if __name__ == "__main__":
    endpoint_arg, bucket_arg, key_arg, chunk_arg = sys.argv[1:5]
    print(json.dumps(child(endpoint_arg, bucket_arg, key_arg, int(chunk_arg))))
