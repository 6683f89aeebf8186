"""`csv-stats` against moto's S3: the figures of one pass of Python's csv module, for any chunk size."""

import csv
import io
import json
import math
import random
from dataclasses import replace

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import errors
from chalicelib import runtime as runtime_module
from chalicelib.jobs import JobContext, csv_stats, testing
from chalicelib.jobs.csv_stats import CsvStats
from chalicelib.jobs.testing import run_steps as run
from chalicelib.runtime import Runtime
from tests.conftest import Api

WORDS = ["café", "日本語", "naïve 🙂", "plain", "a, b", 'he said "hi"', "two\nlines", "Ünïcødé, quoted\r\nand more"]


def generated_csv(*, rows: int = 3000, delimiter: str = ",") -> bytes:
    """Ints, floats, negatives, empty cells, text with quotes, commas, newlines and multi-byte UTF-8.

    `code` is numeric until a late row says "N/A"; `blank` is always empty. No trailing newline.
    """
    rng = random.Random(4180)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["id", "amount", "delta", "label", "code", "blank", "ratio"])
    for i in range(rows):
        writer.writerow(
            [
                i,
                f"{rng.uniform(-1e6, 1e6):.6f}",
                "" if i % 97 == 0 else rng.randint(-500, 500),
                rng.choice(WORDS) + ("" if i % 5 else f" #{i}"),
                "N/A" if i == rows - 10 else rng.randint(0, 99),
                "",
                rng.choice(["1e3", " 42 ", "-0.5", "3.25", str(rng.random())]),
            ]
        )
    return out.getvalue().removesuffix("\r\n").encode("utf-8")


def reference_stats(data: bytes, *, delimiter: str = ",") -> dict:
    """The expected result by the documented rules, from one pass of the csv module over the file."""
    rows = [row for row in csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter) if row]
    header, body = rows[0], rows[1:]
    columns, non_numeric = {}, []
    for index, name in enumerate(header):
        values = [row[index] for row in body if row[index].strip()]
        try:
            numbers = [float(value) for value in values]
        except ValueError:
            numbers = None
        if numbers is None or not all(math.isfinite(n) for n in numbers):
            non_numeric.append(name)
            continue
        total = 0.0
        for number in numbers:  # row order, plain addition (sum() may compensate in newer Pythons)
            total += number
        columns[name] = {
            "count": len(numbers),
            "sum": total,
            "min": min(numbers, default=None),
            "max": max(numbers, default=None),
            "mean": total / len(numbers) if numbers else None,
        }
    return {"rows": len(body), "bytes": len(data), "columns": columns, "nonNumeric": non_numeric}


def job_context(rt: Runtime) -> JobContext:
    """The context the worker gives a job of this runtime (its objects: any input bucket)."""
    objects = rt.objects.scoped(owner="key-a", job_id="01JOBUNDERTEST000000000000", input_buckets=(), work_bucket=None)
    return testing.context(objects=objects)


def splits_a_character(data: bytes, chunk_bytes: int) -> bool:
    """Whether some range boundary falls inside a multi-byte UTF-8 character."""
    return any(data[b] & 0xC0 == 0x80 for b in range(chunk_bytes, len(data), chunk_bytes))


@pytest.fixture
def csv_job(rt):
    job_type = rt.job_types.get("csv-stats")
    return lambda **payload: rt.job_types.check_payload(job_type, payload, job_context(rt))


@pytest.mark.parametrize(
    "chunk_bytes, delimiter",
    [(1024, ","), (1031, ","), (4099, ","), (65536, ","), (csv_stats.DEFAULT_CHUNK_BYTES, ","), (1031, ";")],
)
def test_figures_equal_one_pass_of_the_csv_module_for_any_chunk_size(rt, s3, bucket, csv_job, chunk_bytes, delimiter):
    data = generated_csv(delimiter=delimiter)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=data)
    payload = csv_job(bucket=bucket, key="inputs/key-a/data.csv", chunkBytes=chunk_bytes, delimiter=delimiter)

    result, _, steps = run(CsvStats(), payload, job_context(rt))

    assert result == reference_stats(data, delimiter=delimiter)
    assert result["nonNumeric"] == ["label", "code"] and result["columns"]["blank"]["count"] == 0
    assert len(steps) == math.ceil(len(data) / chunk_bytes)
    assert [s.done for s in steps] == [min(len(data), (i + 1) * chunk_bytes) for i in range(len(steps))]
    assert {(s.total, s.stage) for s in steps} == {(len(data), "reading")}
    assert steps[-1].message == f"{len(data)} of {len(data)} bytes"
    if chunk_bytes in (1024, 1031):
        assert splits_a_character(data, chunk_bytes)  # the file does test a character cut in two


def test_a_state_round_tripped_through_json_resumes_mid_file(rt, settings, s3, bucket, csv_job):
    data = generated_csv(rows=2000)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=data)
    payload = csv_job(bucket=bucket, key="inputs/key-a/data.csv", chunkBytes=1031)
    uninterrupted, _, _ = run(CsvStats(), payload, job_context(rt))

    _, state, _ = run(CsvStats(), payload, job_context(rt), steps=7)
    checkpoint = json.loads(json.dumps(state))
    fresh = Runtime(settings)  # as a new Lambda container would
    redone = CsvStats().step(payload, checkpoint, job_context(fresh))
    resumed, _, _ = run(CsvStats(), payload, job_context(fresh), state=checkpoint)

    assert 0 < checkpoint["offset"] < len(data)
    assert redone.state == CsvStats().step(payload, state, job_context(rt)).state  # a redone chunk agrees
    assert resumed == uninterrupted == reference_stats(data)


def test_a_csv_stats_job_completes_through_the_worker(api, events, s3, bucket):
    data = generated_csv(rows=1500)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/in/data.csv", Body=data)

    job_id = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/in/data.csv", "chunkBytes": 4099}).json[
        "jobId"
    ]
    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "COMPLETED" and job["error"] is None
    assert job["progress"] == 100
    assert job["progressDetail"] == {"done": len(data), "total": len(data), "stage": "reading"}
    assert job["result"] == reference_stats(data)


def test_an_object_deleted_after_submit_fails_the_job_naming_its_key(api, events, s3, bucket):
    s3.put_object(Bucket=bucket, Key="inputs/key-a/in/missing.csv", Body=b"a\n1\n")
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/in/missing.csv"}).json["jobId"]
    s3.delete_object(Bucket=bucket, Key="inputs/key-a/in/missing.csv")
    events.drain()

    job = api.get(job_id).json
    assert job["status"] == "FAILED"
    assert job["error"].startswith("ObjectNotFound:") and f"s3://{bucket}/inputs/key-a/in/missing.csv" in job["error"]
    assert job["result"] is None


@pytest.mark.parametrize(
    "payload",
    [
        {"bucket": "b"},
        {"key": "k"},
        {"bucket": "b", "key": "k", "chunkBytes": 1023},
        {"bucket": "b", "key": "k", "chunkBytes": csv_stats.MAX_CHUNK_BYTES + 1},
        {"bucket": "b", "key": "k", "delimiter": ";;"},
        {"bucket": "b", "key": "k", "delimiter": '"'},
        {"bucket": "b/c", "key": "k"},
        {"bucket": "b", "key": ""},
        {"bucket": "b", "key": "k", "extra": 1},
    ],
    ids=[
        "no key",
        "no bucket",
        "chunk too small",
        "chunk too large",
        "long delimiter",
        "quote delimiter",
        "bad bucket name",
        "empty key",
        "unknown field",
    ],
)
def test_a_bad_payload_is_refused_with_400(api, payload):
    reply = api.submit("csv-stats", payload)

    assert reply.status == 400
    assert reply.json["code"] == "InvalidPayload"


def test_a_bucket_outside_the_input_buckets_is_refused_at_submit(settings, s3, bucket):
    # Given a service whose INPUT_BUCKETS names one bucket (on AWS: the only one its worker may read)
    runtime_module.use(Runtime(replace(settings, input_buckets=(bucket, "other-inputs"))))
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=b"a\n1\n")
    with Client(app_module.app) as client:
        api = Api(client)

        # When a job names another bucket, and then the allowed one
        foreign = api.submit("csv-stats", {"bucket": "someone-elses-bucket", "key": "inputs/key-a/data.csv"})
        allowed = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/data.csv"})
        listed = api.request("GET", "/jobs").json["jobs"]

    # Then the first is a 400 naming the bucket and the allowed ones, and nothing was stored for it
    assert foreign.status == 400 and foreign.json["code"] == "InvalidPayload"
    assert foreign.json["message"] == (
        f"payload.bucket 'someone-elses-bucket' is not an input bucket of this service; allowed: {bucket}, other-inputs"
    )
    assert allowed.status == 202 and allowed.json["status"] == "PENDING"
    assert [job["jobId"] for job in listed] == [allowed.json["jobId"]]


def test_no_input_buckets_means_any_bucket(api, s3, bucket):
    assert runtime_module.get().settings.input_buckets == ()
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=b"a\n1\n")
    assert api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/data.csv"}).status == 202


def test_bom_crlf_blank_lines_and_repeated_names_follow_the_documented_rules(rt, s3, bucket, csv_job):
    data = b'\xef\xbb\xbfa,a,b,c\r\n1,2,x,\r\n\r\n,3.5,,\r\n"-4",nan,"",\r\n\n'
    s3.put_object(Bucket=bucket, Key="inputs/key-a/edge.csv", Body=data)

    result, _, _ = run(
        CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/edge.csv", chunkBytes=1024), job_context(rt)
    )

    assert result == {
        "rows": 3,
        "bytes": len(data),
        "nonNumeric": ["a.1", "b"],
        "columns": {
            "a": {"count": 2, "sum": -3.0, "min": -4.0, "max": 1.0, "mean": -1.5},
            "c": {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None},
        },
    }


def test_an_empty_object_has_no_rows(rt, s3, bucket, csv_job):
    s3.put_object(Bucket=bucket, Key="inputs/key-a/empty.csv", Body=b"")

    result, _, steps = run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/empty.csv"), job_context(rt))

    assert result == {"rows": 0, "bytes": 0, "columns": {}, "nonNumeric": []}
    assert len(steps) == 1 and steps[0].done == steps[0].total == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b'a,b\n1,2\n"x\ny",2\n3\n', "line 5: 1 fields where the header has 2"),
        (b"a,b\n1,2\n1,2,3", "line 3: 3 fields where the header has 2"),
        (b'a,b\n1,"open\n2,3\n', "line 2: unexpected end of data"),
        (b'a,b\n1,"x"y\n', "line 2: ',' expected after '\"'"),
        (b"a,b\n1,\xff\n", "line 2: not UTF-8"),
    ],
    ids=["short row after a quoted newline", "long last row", "unclosed quote", "text after a quote", "not UTF-8"],
)
def test_a_malformed_file_fails_permanently_naming_the_line(rt, s3, bucket, csv_job, data, message):
    s3.put_object(Bucket=bucket, Key="inputs/key-a/bad.csv", Body=data)

    with pytest.raises(errors.PermanentFailure) as failure:
        run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/bad.csv", chunkBytes=1024), job_context(rt))

    assert failure.value.message == message


def test_an_unclosed_quote_fails_once_its_record_runs_past_the_limit(rt, s3, bucket, csv_job, monkeypatch):
    monkeypatch.setattr(csv_stats, "MAX_RECORD_BYTES", 2048)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/open.csv", Body=b'a,b\n1,"never closed' + b"x" * 5000 + b"\n2,3\n")

    with pytest.raises(errors.PermanentFailure) as failure:
        run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/open.csv", chunkBytes=1024), job_context(rt))

    assert failure.value.message == "line 2: a record longer than 2048 bytes (an unclosed quote?)"


def test_a_csv_stats_job_handed_off_across_invocations_equals_the_direct_computation(
    api, settings, sqs, s3, bucket, mysql
):
    from local.eventsource import EventSource

    runtime_module.use(Runtime(replace(settings, handoff_reserve_ms=50)))
    data = generated_csv(rows=3000)
    s3.put_object(Bucket=bucket, Key="inputs/key-a/in/long.csv", Body=data)
    short = EventSource(sqs, settings.jobs_queue_url, app_module.run_jobs, function_timeout=0.15)
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/in/long.csv", "chunkBytes": 4099}).json[
        "jobId"
    ]

    invocations = 0
    while api.get(job_id).json["status"] in ("PENDING", "RUNNING") and invocations < 200:
        invocations += short.poll_once()

    job = api.get(job_id).json
    assert invocations >= 2  # the 0.15 s limit forced hand-offs mid-file
    assert job["status"] == "COMPLETED" and job["result"] == reference_stats(data)
    with mysql.cursor() as cur:
        cur.execute("SELECT checkpoint_seq FROM jobs WHERE id = %s", (job_id,))
        assert cur.fetchone()["checkpoint_seq"] > 0  # resumed from durable checkpoints


def test_header_de_duplication_is_linear_and_names_as_before():
    # Given a 1 MiB-scale header of one repeated name (quadratic before: hours for one chunk)
    import time

    names = ["x"] * 200_000
    started = time.monotonic()

    unique = csv_stats._unique(names)

    assert time.monotonic() - started < 2
    assert len(set(unique)) == 200_000 and unique[:3] == ["x", "x.1", "x.2"]
    assert csv_stats._unique(["a", "a", "a.1", "a", "b", "a.2", "a"]) == [
        "a",
        "a.1",
        "a.1.1",
        "a.2",
        "b",
        "a.2.1",
        "a.3",
    ]


# --- bounded work per chunk --------------------------------------------------------------------


def _queued(sqs, settings) -> int:
    """Messages left in the jobs queue: visible, in flight or delayed (a retry would be one)."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=settings.jobs_queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_a_110000_column_csv_fails_at_its_first_chunk_naming_the_column_cap(api, events, s3, bucket, sqs, settings):
    # Given the file of issue 15: 110,000 columns, 989 KB (it completed, and its view was 6.8 MB)
    header = ",".join(f"x{i:07d}" for i in range(110_000)).encode()
    data = header + b"\n" + b",".join([b"1"] * 110_000) + b"\n"
    assert 989_000 <= len(header) < csv_stats.MAX_RECORD_BYTES  # the column cap, not the line limit, stops it
    s3.put_object(Bucket=bucket, Key="inputs/key-a/wide.csv", Body=data)

    # When it is submitted with the default chunk size, and the worker takes what is queued
    job_id = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/wide.csv"}).json["jobId"]
    handled = events.drain()

    # Then one delivery failed it for good in its first chunk, naming the cap; nothing is left to retry
    job = api.get(job_id).json
    assert handled == 1 and _queued(sqs, settings) == 0
    assert (job["status"], job["attempts"], job["progress"], job["result"]) == ("FAILED", 1, 0, None)
    assert job["error"] == "PermanentFailure: line 1: the header has 110000 columns, over the limit of 2000 columns"


def test_the_column_cap_admits_exactly_max_columns(rt, s3, bucket, csv_job):
    def wide(columns: int) -> bytes:
        return (",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join(["1.5"] * columns) + "\n").encode()

    s3.put_object(Bucket=bucket, Key="inputs/key-a/at.csv", Body=wide(csv_stats.MAX_COLUMNS))
    s3.put_object(Bucket=bucket, Key="inputs/key-a/over.csv", Body=wide(csv_stats.MAX_COLUMNS + 1))

    at, _, _ = run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/at.csv"), job_context(rt))
    with pytest.raises(errors.PermanentFailure) as over:
        run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/over.csv"), job_context(rt))

    assert at["rows"] == 1 and len(at["columns"]) == csv_stats.MAX_COLUMNS
    assert over.value.message == "line 1: the header has 2001 columns, over the limit of 2000 columns"


def test_a_header_whose_names_outgrow_their_share_of_the_checkpoint_fails(rt, s3, bucket, csv_job):
    names = [f"{i:04d}" + "n" * 60 for i in range(1000)]  # 1,000 columns: under the cap, 67 KB of names
    s3.put_object(Bucket=bucket, Key="inputs/key-a/long-names.csv", Body=(",".join(names) + "\n").encode())

    with pytest.raises(errors.PermanentFailure) as failure:
        run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/long-names.csv"), job_context(rt))

    size = len(json.dumps(names))
    assert failure.value.message == f"line 1: the header's names take {size} bytes of JSON, over the limit of 49152"


def test_the_largest_state_the_limits_allow_fits_under_the_checkpoint_ceiling():
    # Given MAX_COLUMNS columns whose names fill MAX_HEADER_BYTES, each with the longest figures
    # (a 13-digit count, three 24-character floats): the limits' worst case
    from chalicelib.jobs import MAX_STATE_BYTES

    width = csv_stats.MAX_HEADER_BYTES // csv_stats.MAX_COLUMNS - 4  # '"' name '", '
    header = [f"{i:04d}".ljust(width, "n") for i in range(csv_stats.MAX_COLUMNS)]
    worst = -1.2345678901234567e-300
    state = {
        "size": 5 * 10**12,
        "offset": 5 * 10**12,
        "record": 5 * 10**12,
        "line": 10**13,
        "header": header,
        "rows": 10**13,
        "columns": [[10**13 - 1, worst, worst, worst] for _ in header],
    }
    assert len(json.dumps(header)) <= csv_stats.MAX_HEADER_BYTES

    # Then its JSON leaves room for the worker's own part of a checkpoint (sequence, progress, message)
    assert len(json.dumps(state)) <= MAX_STATE_BYTES - 16 * 1024


def test_a_line_over_the_limit_inside_one_chunk_fails_naming_its_line(api, events, s3, bucket):
    # Given a file whose third line is one byte over MAX_RECORD_BYTES, all of it in the first chunk
    line = b"3," + b"x" * (csv_stats.MAX_RECORD_BYTES - 1)
    data = b"a,b\n1,2\n" + line + b"\n4,5\n"
    assert len(line) == csv_stats.MAX_RECORD_BYTES + 1 and len(data) < csv_stats.DEFAULT_CHUNK_BYTES
    s3.put_object(Bucket=bucket, Key="inputs/key-a/long-line.csv", Body=data)

    job_id = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/long-line.csv"}).json["jobId"]
    handled = events.drain()

    job = api.get(job_id).json
    assert handled == 1 and (job["status"], job["attempts"]) == ("FAILED", 1)
    assert job["error"] == "PermanentFailure: line 3: a record longer than 1048576 bytes"


def test_a_record_at_the_limit_completes_and_a_quoted_one_over_it_is_named_by_its_first_line(
    rt, s3, bucket, csv_job, monkeypatch
):
    monkeypatch.setattr(csv_stats, "MAX_RECORD_BYTES", 2048)
    at_limit = b"2," + b"y" * 2046
    over = b'3,"' + b"z" * 1000 + b"\n" + b"z" * 1045 + b'"'  # lines 4-5 of the file, 2,050 bytes
    s3.put_object(Bucket=bucket, Key="inputs/key-a/ok.csv", Body=b"a,b\n" + at_limit + b"\n4,5\n")
    s3.put_object(Bucket=bucket, Key="inputs/key-a/over.csv", Body=b"a,b\n1,2\n\n" + over + b"\n4,5\n")
    payload = {"chunkBytes": 65536}

    ok, _, _ = run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/ok.csv", **payload), job_context(rt))
    with pytest.raises(errors.PermanentFailure) as failure:
        run(CsvStats(), csv_job(bucket=bucket, key="inputs/key-a/over.csv", **payload), job_context(rt))

    assert ok["rows"] == 2 and ok["nonNumeric"] == ["b"]
    assert failure.value.message == "line 4: a record longer than 2048 bytes"


def test_a_record_longer_than_a_chunk_is_read_again_in_doubling_ranges_and_never_checkpointed(rt, s3, bucket, csv_job):
    # Given a 100,000-byte record read in 1 KiB chunks
    data = b"a,b\n1," + b"x" * 100_000 + b"\n2,3\n"
    s3.put_object(Bucket=bucket, Key="inputs/key-a/long.csv", Body=data)
    payload = csv_job(bucket=bucket, key="inputs/key-a/long.csv", chunkBytes=1024)

    result, _, steps = run(CsvStats(), payload, job_context(rt))

    # Then each chunk after the first reads the incomplete record again and as much more, so it takes
    # 8 chunks, not the 98 of one KiB each; and no checkpoint holds the record's bytes
    assert result["rows"] == 2 and result["nonNumeric"] == ["b"] and result["columns"]["a"]["sum"] == 3.0
    assert [s.done for s in steps] == [1024, 2048, 4092, 8180, 16356, 32708, 65412, len(data)]
    assert max(len(json.dumps(s.state)) for s in steps) < 300


def test_a_chunk_takes_its_records_one_by_one_instead_of_listing_every_line():
    # Given 1 MiB of short lines (the shape whose 64 MiB chunk peaked at 1,447 MiB in issue 15)
    import tracemalloc

    data = b"id,amount\n" + b"".join(b"%d,%d.25\n" % (i, i % 1000) for i in range(90_000))
    tally = csv_stats._Tally(",")

    tracemalloc.start()
    try:
        rest = tally.take_all(data, begin=0, final=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then the chunk allocated a few records' worth at a time, not a list of its 90,001 lines (~5 MB)
    assert rest == len(data) and tally.rows == 90_000
    assert peak < 64 * 1024


def test_the_chunk_maximum_is_published_and_enforced_at_submit(api, s3, bucket):
    s3.put_object(Bucket=bucket, Key="inputs/key-a/data.csv", Body=b"a\n1\n")
    doc = api.request("GET", "/openapi.json", key=None).json
    variants = doc["components"]["schemas"]["Submission"]["oneOf"]
    (payload_schema,) = [
        v["properties"]["payload"] for v in variants if v["properties"]["type"]["enum"] == ["csv-stats"]
    ]

    at_max = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/data.csv", "chunkBytes": 16 * 1024**2})
    over = api.submit("csv-stats", {"bucket": bucket, "key": "inputs/key-a/data.csv", "chunkBytes": 16 * 1024**2 + 1})

    assert payload_schema["properties"]["chunkBytes"]["maximum"] == 16 * 1024 * 1024
    assert at_max.status == 202
    assert over.status == 400 and over.json["code"] == "InvalidPayload" and "chunkBytes" in over.json["message"]
