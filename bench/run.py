"""Run every benchmark and print one table: figure, value, budget or comparison, verdict.

python -m bench            # the full run (about five minutes on 2 cores)
python -m bench --quick    # small sizes, for CI (well under two minutes)
python -m bench --json out.json --only api,worker
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

AREAS = (
    "api",
    "worker",
    "compare",
    "coldstart",
    "memory",
    "results",
    "fairness",
    "scheduled",
    "priorities",
    "webhooks",
    "batches",
)


@dataclass(frozen=True)
class Sizes:
    calls: int  #: requests per route
    job_sizes: list[int]  #: chunks per job for the per-job costs
    repeats: int  #: jobs of each size
    jobs: int  #: jobs in each throughput run
    processes: list[int]  #: worker process counts
    compare_processes: list[int]  #: process counts at which RQ and Celery run beside ours
    polls: int  #: RQ / Celery status polls and progress updates
    imports: int  #: `-X importtime` runs (the median is kept)
    chunk_mib: list[int]  #: csv-stats chunk sizes whose peak memory is measured
    shapes_at_max: bool  #: also 3-byte lines at MAX_CHUNK_BYTES
    large_result: int  #: bytes of the large result offloaded and fetched
    result_repeats: int  #: offloads of the large result (the median is kept)
    fairness: tuple[int, int, int, float]  #: tenant A's jobs, their chunks, tenant B's jobs, the window (s)
    scheduled: int  #: jobs submitted for 2-5 s ahead
    #: due schedules and SCHEDULED jobs waiting, for the sweeper's cost per pass
    schedules: tuple[int, int] = (1000, 10_000)
    webhooks: int = 100  #: jobs whose webhook latency is measured
    priorities: tuple[int, int] = (1000, 20)  #: normal jobs queued, high jobs submitted during their backlog
    batch: int = 500  #: jobs of the batch submitted against as many single submits


FULL = Sizes(
    calls=1000,
    job_sizes=[10, 100, 1000],
    repeats=5,
    jobs=1000,
    processes=[1, max(2, os.cpu_count() or 2)],
    compare_processes=[1, max(2, os.cpu_count() or 2)],
    polls=1000,
    imports=5,
    chunk_mib=[1, 4, 16, 64],
    shapes_at_max=True,
    large_result=50_000_000,
    result_repeats=5,
    fairness=(500, 20, 10, 10.0),
    scheduled=20,
)
QUICK = Sizes(
    calls=100,
    job_sizes=[10, 100],
    repeats=2,
    jobs=200,
    processes=[1, max(2, os.cpu_count() or 2)],
    compare_processes=[max(2, os.cpu_count() or 2)],
    polls=200,
    imports=3,
    chunk_mib=[1, 4],
    shapes_at_max=False,
    large_result=2_000_000,
    result_repeats=3,
    fairness=(24, 20, 4, 2.0),
    scheduled=4,
    schedules=(100, 1000),
    webhooks=20,
    priorities=(150, 4),
    batch=50,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--only", default=",".join(AREAS), help=f"comma-separated areas of {', '.join(AREAS)}")
    parser.add_argument("--json", type=Path, help="also write the rows, with their raw numbers, to this file")
    ns = parser.parse_args(argv)
    ns.only = [a for a in ns.only.split(",") if a]
    unknown = set(ns.only) - set(AREAS)
    if unknown:
        parser.error(f"unknown areas: {', '.join(sorted(unknown))}")
    return ns


def machine(servers: str) -> str:
    """What the figures were taken on."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {servers}"


def print_table(rows, out=sys.stdout) -> None:
    header = ("figure", "value", "budget / comparison", "verdict")
    table = [header] + [(r.figure, r.value, r.reference, r.verdict) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for i, line in enumerate(table):
        print(" | ".join(cell.ljust(widths[j]) if j < 3 else cell for j, cell in enumerate(line)), file=out)
        if i == 0:
            print("-+-".join("-" * w for w in widths) + "-+--------", file=out)


def main(argv: list[str] | None = None) -> None:
    ns = parse_args(argv)
    sizes = QUICK if ns.quick else FULL
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import (
        api,
        batches,
        coldstart,
        compare,
        fairness,
        memory,
        priorities,
        results,
        scheduled,
        webhooks,
        worker,
    )
    from bench.env import BenchEnv, Row, dumps, silence_libraries

    silence_libraries()
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the run's database and Redis db are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    rows: list[Row] = []
    with BenchEnv() as env:
        servers = env.server_versions()
        chunk = None
        if "api" in ns.only:
            rows += api.run(env, calls=sizes.calls)
        if "worker" in ns.only or "compare" in ns.only:
            cost_rows, chunk = worker.costs(env, sizes=sizes.job_sizes, repeats=sizes.repeats)
            if "worker" in ns.only:
                rows += cost_rows + worker.server_commands(env) + worker.chunk_profile(env)
        if "worker" in ns.only and "compare" not in ns.only:  # with compare, jobs/s is measured beside RQ and Celery
            rows += worker.throughput_rows(env, jobs=sizes.jobs, process_counts=sizes.processes)[0]
        if "compare" in ns.only:
            rows += compare.run(
                env, polls=sizes.polls, jobs=sizes.jobs, processes=sizes.compare_processes, ours_chunk=chunk
            )
        if "memory" in ns.only:
            rows += memory.run(env, chunk_mib=sizes.chunk_mib, shapes_at_max=sizes.shapes_at_max)
        if "results" in ns.only:
            rows += results.run(env, large_bytes=sizes.large_result, repeats=sizes.result_repeats, calls=sizes.calls)
        if "fairness" in ns.only:
            a_jobs, a_chunks, b_jobs, window = sizes.fairness
            rows += fairness.run(env, a_jobs=a_jobs, a_chunks=a_chunks, b_jobs=b_jobs, window_seconds=window)
        if "scheduled" in ns.only:
            rows += scheduled.run(env, jobs=sizes.scheduled)
            rows += scheduled.sweep_cost(env, schedules=sizes.schedules[0], jobs=sizes.schedules[1])
        if "priorities" in ns.only:
            normal_jobs, high_jobs = sizes.priorities
            rows += priorities.run(env, normal_jobs=normal_jobs, high_jobs=high_jobs)
        if "webhooks" in ns.only:
            rows += webhooks.run(env, jobs=sizes.webhooks)
        if "batches" in ns.only:
            rows += batches.run(env, jobs=sizes.batch)
    if "coldstart" in ns.only:
        rows += coldstart.run(runs=sizes.imports)
    print(f"\nbench ({'quick' if ns.quick else 'full'}) on {machine(servers)}; {time.monotonic() - started:.0f} s\n")
    print_table(rows)
    if ns.json:
        ns.json.write_text(dumps(rows))


if __name__ == "__main__":
    main()
