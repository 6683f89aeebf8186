"""The benchmarks stay runnable: `python -m bench --quick` exits 0 and prints every row of its table.

Benchmarks are not timed tests: no time is asserted here. The counted budgets are, since they are
counts, not timings: GET on the hot path is 1 Redis round trip and no MySQL statement (one job, or
100 by ids), POST is one insert, a job's MySQL writes do not grow with its chunks, a large result is
one PutObject and its GET a 303 made without a request to S3; and a small csv-stats chunk's peak
memory is within its budget (a quarter of the worker's).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("rq")
pytest.importorskip("celery")
#: `make test` runs it after the parallel part, by itself: it starts many processes of its own and
#: its timeouts assume the machine is not shared with another worker of the suite.
pytestmark = pytest.mark.alone


@pytest.mark.timeout(300)
def test_quick_bench_prints_the_table_and_keeps_the_counted_budgets(tmp_path, run_settings):
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {row["figure"]: row for row in json.loads(out.read_text())}
    for figure in rows:
        assert figure in done.stdout
    assert re.search(r"^figure +\| value +\| budget / comparison +\| verdict$", done.stdout, re.M)
    assert rows["GET /jobs/{id} hot: Redis round trips"]["data"]["value"] == 1
    assert rows["GET /jobs/{id} hot: MySQL statements"]["data"]["value"] == 0
    assert rows["POST /jobs: MySQL inserts"]["data"]["value"] == 1
    assert rows["GET /jobs?ids= of 100 hot jobs: Redis round trips"]["data"]["value"] == 1
    assert rows["GET /jobs?ids= of 100 hot jobs: MySQL statements"]["data"]["value"] == 0
    writes = rows["worker: MySQL writes per job (10 / 100 chunks)"]["data"]["writes"]
    assert writes["10"] == writes["100"]
    # Three statements per job in all (insert, start, final), whatever its chunks, alone or in a batch
    statements = rows["worker: MySQL statements per job, submit to end (10 / 100 chunks)"]["data"]["statements"]
    assert statements == {"10": 3, "100": 3}
    batch = rows["per job of a batch of 10 ten-chunk jobs, submit to end"]["data"]
    # Every record's message but the last deleted by the worker, up to ten to a request: one
    # request when the ten jobs end within the deletes' linger of 0.5 s (a second on a CI machine
    # slow enough to spread them over two).
    assert (batch["mysql"], batch["sqs_ops"]["SendMessage"], batch["deleted"]) == (3, 10, 9)
    assert set(batch["sqs_ops"]) == {"SendMessage", "DeleteMessageBatch"}
    assert batch["sqs_ops"]["DeleteMessageBatch"] <= 2
    assert rows["Redis server commands (scripts' calls included)"]["data"]["per_chunk"] > 0
    assert rows["worker: Redis round trips per chunk"]["data"]["value"] == 1
    assert any(
        figure.startswith("jobs/s") and "RQ" in row["reference"] and "Celery" in row["reference"]
        for figure, row in rows.items()
    )
    assert any(figure.startswith("cold start: API function") for figure in rows)
    # Nothing of boto3, the tests, the local runtime or the Python client (client/) in the Lambda zip.
    assert rows["deployment package leaves out boto3 and test-only code"]["data"]["shipped"] == []
    # Peak memory is a measurement, not a time: a 4 MiB chunk sits far inside a quarter of the worker
    for mib in (1, 4):
        chunk = rows[f"csv-stats chunk of {mib} MiB, short lines: peak RSS over baseline"]
        assert chunk["verdict"] == "ok" and chunk["data"]["budget_mib"] == 128
    assert rows["csv-stats chunk of 4 MiB, short lines: peak RSS over baseline"]["data"]["done"] == 4 * 1024 * 1024
    # A large result's GET is a 303 signed without a request to S3: headers through Lambda, no body
    get = rows["GET /jobs/{id}/result of a 2 MB result: bytes through Lambda"]["data"]
    assert (get["large"]["status"], get["large"]["s3"], get["inline"]["status"]) == (303, 0, 200)
    assert get["large"]["bytes"] < 2048 < get["inline"]["bytes"]
    offloads = [row["data"]["puts"] for figure, row in rows.items() if figure.startswith("result offload")]
    assert offloads == [1, 1]
    # A job start's slots (tenant limits) are one Redis round trip; the fairness rows are printed
    assert rows["slots: a job start's owner and type slots, 19 others running"]["data"]["round_trips"] == 1
    assert sum(figure.startswith(("fairness: ", "moto: one ReceiveMessage")) for figure in rows) == 4
    # A scheduled job never starts before its runAt (how soon after is a time: printed, not held here)
    [scheduled] = [row for figure, row in rows.items() if figure.startswith("scheduled: start - runAt")]
    assert scheduled["data"]["jobs"] == 4 and scheduled["data"]["earliest_s"] >= 0
    [swept] = [row for figure, row in rows.items() if figure.startswith("scheduled (past SQS's 15 minutes)")]
    assert swept["data"]["jobs"] == 4 and swept["data"]["earliest_s"] >= 0
    # Schedules: a pass is one indexed range and two statements per schedule fired; none due, one statement
    [fired] = [row for figure, row in rows.items() if figure.startswith("schedules: passes making")]
    assert (fired["verdict"], fired["data"]["made"], fired["data"]["statements"]) == ("ok", 100, 201)
    [idle] = [row for figure, row in rows.items() if figure.startswith("schedules: a pass with none due")]
    assert (idle["data"]["statements"], idle["data"]["key"]) == (1, "ix_schedules_next_run")
    # Priorities: every high job was measured, and the normal backlog moved meanwhile (a count, not a time)
    [high] = [row for figure, row in rows.items() if figure.startswith("priorities: queue wait of 4 high jobs")]
    assert high["data"]["high_jobs"] == 4 and high["data"]["normal_done_during"] > 0
    assert any(figure.startswith("priorities: the same high jobs without a queue of their own") for figure in rows)
    # Webhooks: a job with a callback is one MySQL write more in the worker; an attempt is two statements
    assert rows["worker, MySQL writes per job with a callbackUrl (start, finish, webhook queued)"]["data"]["value"] == 3
    attempt = rows["webhook delivery, MySQL statements per attempt (read the row, record the attempt)"]["data"]
    assert [s.split()[0] for s in attempt["mysql"]] == ["SELECT", "UPDATE"] and attempt["aws"] == []
    latency = rows["webhook latency from the final write to the receiver, p50 / p95 (local: moto SQS, loopback)"]
    assert len(latency["data"]["samples_ms"]) == 20 and latency["data"]["p50_ms"] <= latency["data"]["p95_ms"]
    # A batch of 50: the batch's row and one multi-row insert of its jobs, five SendMessageBatch, one
    # Redis round trip; its hot GET one round trip and no MySQL
    cost = rows["batch submit: what 50 jobs cost, batch vs singles"]["data"]
    assert (cost["batch_mysql"], cost["batch_redis"], cost["batch_sqs"]) == (2, 1, 5)
    assert (cost["single_mysql"], cost["single_sqs"]) == (50, 50)
    poll = rows["GET /batches/{id} of a hot 50-job batch"]["data"]
    assert (poll["redis"], poll["mysql"]) == (1, 0)
