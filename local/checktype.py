"""`jobs check-type MODULE:NAME --payload JSON`: prove a job type is safe to redo, before deploying it.

NAME is the class or the type's `name`. Inputs come from files (`--object BUCKET/KEY=FILE`, as many
as the payload reads) or, with `--s3`, from S3 at AWS_ENDPOINT_URL (the local runtime's moto, or
AWS). Exit 0 when the type is safe, 1 with the first divergence explained, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from chalicelib import errors
from chalicelib.jobs import JobType, testing, types_of
from chalicelib.jobs.registry import load_module

USAGE_ERROR = 2


def add_parser(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check-type", help="prove a job type is safe to redo (runs it locally four ways)")
    check.add_argument(
        "target",
        metavar="MODULE:NAME",
        help="the class or the type's name, e.g. acme.jobtypes:WordFrequency or acme.jobtypes:word-frequency",
    )
    check.add_argument("--payload", default="{}", help="the payload, as JSON")
    check.add_argument(
        "--object",
        action="append",
        default=[],
        metavar="BUCKET/KEY=FILE",
        help="an input object the payload names, read from a local file (repeatable)",
    )
    check.add_argument("--s3", action="store_true", help="read inputs from S3 at AWS_ENDPOINT_URL instead")
    check.add_argument(
        "--chunk-budget", type=float, default=testing.CHUNK_BUDGET_SECONDS, help="longest a chunk may take, in seconds"
    )


def run(ns: argparse.Namespace) -> int:
    try:
        job_type = resolve(ns.target)
        payload = json.loads(ns.payload)
        objects = _s3_objects() if ns.s3 else testing.MemoryObjects(dict(_object(spec) for spec in ns.object))
    except (errors.Misconfigured, ValueError, OSError) as exc:
        print(f"jobs check-type: {exc}", file=sys.stderr)
        return USAGE_ERROR
    report = testing.check_job_type(
        job_type, payload, context=testing.context(objects=objects), chunk_budget_seconds=ns.chunk_budget
    )
    print(report)
    return 0 if report.ok else 1


def resolve(target: str) -> JobType:
    """The job type MODULE:NAME names (NAME: the class, or the type's `name`)."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ValueError(f"{target!r} is not MODULE:NAME")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the team's own modules, as JOB_TYPES names them
    module = load_module(module_name)
    found = getattr(module, name, None)
    if isinstance(found, type) and issubclass(found, JobType):
        return found()
    by_name = {job_type.name: job_type for job_type in types_of(module)}
    if name not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        raise ValueError(f"module {module_name!r} has no job type {name!r}; its types: {known}")
    return by_name[name]


def _object(spec: str) -> tuple[tuple[str, str], bytes]:
    address, sep, path = spec.partition("=")
    bucket, slash, key = address.partition("/")
    if not (sep and slash and bucket and key and path):
        raise ValueError(f"--object {spec!r} is not BUCKET/KEY=FILE")
    return (bucket, key), Path(path).read_bytes()


def _s3_objects():
    from chalicelib.config import Settings
    from chalicelib.objects import ObjectStore, connect

    s = Settings.from_env()
    store = ObjectStore(lambda: connect(endpoint_url=s.aws_endpoint_url, region=s.aws_region))
    # As in a job, inputs are read only under the owner's prefix: inputs/<owner>/ (CHECK_TYPE_OWNER).
    return store.scoped(
        owner=os.environ.get("CHECK_TYPE_OWNER", "check-type"),
        job_id="01CHECKTYPE000000000000000",
        input_buckets=(),
        work_bucket=s.work_bucket,
    )
