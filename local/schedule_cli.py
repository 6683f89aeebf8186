"""`jobs schedule add|list|pause|resume|rm`: recurring schedules from the command line (cli.py).

jobs schedule add "*/5 * * * *" TYPE [--payload JSON] [--timezone Europe/Berlin] [--overlap allow]
jobs schedule list                 your schedules: cron, zone, paused, next and last run, skipped
jobs schedule pause ID | resume ID the schedule's JSON afterwards
jobs schedule rm ID
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs_client import Client, Schedule


class UsageError(Exception):
    """An argument the command cannot use (cli.py reports it, as every command's)."""


def json_arg(text: str, what: str) -> Any:
    """An argument's JSON (`--payload`, `--then`, a line of a batch file), or a UsageError naming it."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None


def add_parser(commands: Any) -> None:
    """The `schedule` command and its subcommands, on the `jobs` parser's subparsers."""
    schedule = commands.add_parser("schedule", help="recurring schedules: add, list, pause, resume, rm")
    actions = schedule.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="a job made at each occurrence of a cron expression")
    add.add_argument("cron", help='5 fields: minute hour day-of-month month day-of-week, e.g. "0 6 * * 1-5"')
    add.add_argument("type", help="the job type of each occurrence's job")
    add.add_argument("--payload", default="{}", help="the job's payload, as JSON")
    add.add_argument("--timezone", help="the IANA zone of the expression (default UTC), e.g. Europe/Berlin")
    add.add_argument("--overlap", choices=("skip", "allow"), help="while the previous job runs (default skip)")
    add.add_argument("--max-attempts", type=int)
    add.add_argument("--timeout-seconds", type=int)
    add.add_argument("--paused", action="store_true", help="create it paused")
    actions.add_parser("list", help="your schedules, newest first")
    for action, what in (("pause", "pause: no jobs until resumed"), ("resume", "resume"), ("rm", "delete")):
        actions.add_parser(action, help=what).add_argument("id")


def table(schedules: list[Schedule]) -> str:
    """Schedules as rows: id, cron, zone, state, next run, last run, last job, skipped."""
    width = max([4, *(len(s.cron) for s in schedules)])
    rows = [
        f"{'SCHEDULE':26}  {'CRON':{width}}  {'TIMEZONE':16}  {'STATE':7}  {'NEXT RUN':20}  {'LAST RUN':20}  SKIPPED"
    ]
    for s in schedules:
        rows.append(
            f"{s.id:26}  {s.cron:{width}}  {s.timezone:16}  {'paused' if s.paused else 'active':7}  "
            f"{_when(s.next_run_at):20}  {_when(s.last_run_at):20}  {s.skipped}"
        )
    return "\n".join(rows)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def run(client: Client, ns: argparse.Namespace) -> int:
    """Carry out one `jobs schedule` subcommand; 0, or an exception cli.main reports."""
    if ns.action == "list":
        print(table(list(client.schedules())))
        return 0
    if ns.action == "rm":
        client.delete_schedule(ns.id)
        print(f"deleted schedule {ns.id}")
        return 0
    if ns.action in ("pause", "resume"):
        changed = client.update_schedule(ns.id, paused=ns.action == "pause")
        print(json.dumps(changed.raw, indent=2))
        return 0
    job: dict[str, Any] = {"type": ns.type, "payload": json_arg(ns.payload, "--payload")}
    if ns.max_attempts is not None:
        job["maxAttempts"] = ns.max_attempts
    if ns.timeout_seconds is not None:
        job["timeoutSeconds"] = ns.timeout_seconds
    made = client.create_schedule(ns.cron, job, timezone=ns.timezone, overlap=ns.overlap, paused=ns.paused or None)
    print(json.dumps(made.raw, indent=2))
    return 0
