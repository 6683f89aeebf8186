"""What a large result costs: its offload to S3 when the job ends, and `GET /jobs/{id}/result`.

Offload: `Results.store` (the worker's path before the final UPDATE: the JSON, then one PutObject
to moto's S3 on loopback above INLINE_RESULT_BYTES) for a large result and one just over the
threshold, against an inline result just under it, which is only measured. Times are ratios
within the run. GET: a `bench-blob` job per size run through the worker Lambda's handler, then
`GET /jobs/{id}/result` through the app as Lambda invokes it: an inline result comes back as the
200 body, a large one as a 303 whose presigned URL is signed without a request to S3, so the
bytes through Lambda are the headers, whatever the result's size.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

from bench.api import proxy_event
from bench.env import OWNER, Row, counted, percentiles, quiet, recording_runtime, sqs_event, submit_jobs
from chalicelib import runtime as runtime_module
from chalicelib.results import Results
from chalicelib.runtime import Runtime
from local.eventsource import LambdaContext

KIB = 1024


def _shown(size: int) -> str:
    return f"{size / 1e6:g} MB" if size >= 1e6 else f"{size / KIB:g} KiB"


def run(env: Any, *, large_bytes: int, repeats: int, calls: int) -> list[Row]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env.moto_url, region_name="us-east-1")
    bucket = f"bench-results-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    settings = env.with_settings(results_bucket=bucket, job_types=("bench.blob",))
    try:
        rows = _offload(Runtime(settings), large_bytes=large_bytes, repeats=repeats)
        rows += _get(settings, large_bytes=large_bytes, calls=calls)
    finally:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    return rows


def _sizes(inline_bytes: int, large_bytes: int) -> dict[str, int]:
    """Blob sizes: an inline result just under the threshold, one just over it, a large one."""
    return {"inline": inline_bytes - 16 * KIB, "over": inline_bytes + 16 * KIB, "large": large_bytes}


def _offload(runtime: Runtime, *, large_bytes: int, repeats: int) -> list[Row]:
    results = Results(runtime.objects, runtime.settings)
    sizes = _sizes(runtime.settings.inline_result_bytes, large_bytes)
    times: dict[str, float] = {}
    puts: dict[str, int] = {}
    for name, size in sizes.items():
        value = {"blob": "x" * size}
        results.store(OWNER, "01BENCHRESULT0000000000000", value)  # warm: the client, the connection
        samples = []
        for _ in range(repeats if name == "large" else max(repeats, 20)):
            with counted() as count:
                started = time.perf_counter()
                stored = results.store(OWNER, "01BENCHRESULT0000000000000", value)
                samples.append(time.perf_counter() - started)
            puts[name] = count.aws.count("PutObject")
        if (stored.key is None) != (name == "inline"):
            raise RuntimeError(f"a {size}-byte result was not stored as expected: {stored}")
        times[name] = statistics.median(samples)
    inline = times["inline"]
    return [
        Row(
            f"result offload: store of a {_shown(sizes[name])} result ({puts[name]} S3 PutObject)",
            f"{times[name] * 1000:.2f} ms (x{times[name] / inline:.0f} of inline)",
            f"inline {_shown(sizes['inline'])} (JSON only, {puts['inline']} PutObject): {inline * 1000:.2f} ms;"
            f" median of {repeats if name == 'large' else max(repeats, 20)}",
            "info",
            {"seconds": times[name], "inline_seconds": inline, "bytes": sizes[name], "puts": puts[name]},
        )
        for name in ("over", "large")
    ]


def _get(settings, *, large_bytes: int, calls: int) -> list[Row]:
    import app as app_module

    runtime, sqs = recording_runtime(settings)
    runtime_module.use(runtime)
    try:
        with quiet():
            sizes = _sizes(settings.inline_result_bytes, large_bytes)
            ids = {name: _completed(app_module, runtime, sqs, size) for name, size in sizes.items() if name != "over"}
            found = {name: _measure_get(app_module, job_id, calls) for name, job_id in ids.items()}
    finally:
        runtime_module.use(None)
    inline, large = found["inline"], found["large"]
    result_bytes = len(json.dumps({"blob": "x" * large_bytes}, separators=(",", ":")))
    return [
        Row(
            f"GET /jobs/{{id}}/result of a {_shown(large_bytes)} result: bytes through Lambda",
            f"{large['status']}, {large['bytes']} bytes (x{large['bytes'] / result_bytes:.1g} of the result)",
            f"inline {_shown(sizes['inline'])}: {inline['status']}, {inline['bytes']} bytes;"
            f" {large['s3']} S3 requests (presigned, no body)",
            "ok" if large["status"] == 303 and large["s3"] == 0 else "MISS",
            {"large": large, "inline": inline, "result_bytes": result_bytes},
        ),
        Row(
            f"GET /jobs/{{id}}/result of a {_shown(large_bytes)} result: handler p50",
            f"{large['p50_ms']:.2f} ms (x{large['p50_ms'] / inline['p50_ms']:.2g} of inline)",
            f"inline {_shown(sizes['inline'])}, 200: {inline['p50_ms']:.2f} ms; {calls} calls each",
            "info",
            {"p50_ms": large["p50_ms"], "inline_p50_ms": inline["p50_ms"]},
        ),
    ]


def _completed(app_module, runtime: Runtime, sqs, size: int) -> str:
    """A bench-blob job of `size` bytes, run to COMPLETED by the worker's handler; its id."""
    (job_id,), records = submit_jobs(runtime, sqs, 1, {"bytes": size}, job_type="bench-blob")
    reply = app_module.run_jobs(sqs_event(records), LambdaContext(timeout_seconds=900))
    job = runtime.store.get_job(job_id)
    if reply["batchItemFailures"] or job is None or job.status.value != "COMPLETED":
        raise RuntimeError(f"the {size}-byte bench-blob job did not complete: {reply}, {job}")
    return job_id


def _measure_get(app_module, job_id: str, calls: int) -> dict[str, Any]:
    """p50 of GET /jobs/{id}/result, its status, the bytes of its answer and the S3 requests it made."""
    event = proxy_event("GET", "/jobs/{job_id}/result", f"/jobs/{job_id}/result", path_params={"job_id": job_id})
    context = LambdaContext(timeout_seconds=30, function_name="jobs-dev-api_handler")
    samples, s3_calls = [], 0
    for _ in range(calls + 1):  # the first warms
        with counted() as count:
            started = time.perf_counter()
            reply = app_module.app(event, context)
            samples.append(time.perf_counter() - started)
        s3_calls = max(s3_calls, len(count.aws))
    headers = reply.get("headers") or {}
    size = len(reply.get("body") or "") + sum(len(k) + len(str(v)) + 4 for k, v in headers.items())
    return {"status": reply["statusCode"], "bytes": size, "p50_ms": percentiles(samples[1:])[0], "s3": s3_calls}
