"""Deploy or tear down one stage: infra stacks, migrations, Chalice functions and API, SQS mapping,
usage plans, a smoke test.

    python -m infra.deploy deploy --stage dev        # what `make deploy STAGE=dev` runs
    python -m infra.deploy teardown --stage dev      # `make teardown STAGE=dev`

It talks to whatever boto3 talks to: AWS, or LocalStack / moto's server when AWS_ENDPOINT_URL says
so. `--without data` (and `--env MYSQL_URL=... --env REDIS_URL=...`) leaves out the RDS and
ElastiCache stack where an emulator cannot create it. infra/README.md describes each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infra import api_keys, bytecode, stacks, stage_config, usage_plans, webhook_secrets

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
#: What `chalice deploy` packages: the app and its runtime requirements, nothing else.
PROJECT_FILES = ("app.py", "chalicelib", "requirements.txt")
STACKS = ("network", "data", "service")
REPORT_BATCH_ITEM_FAILURES = ["ReportBatchItemFailures"]


def deploy(ns: argparse.Namespace) -> dict:
    """Deploy every step of the stage; returns what was deployed (also printed as JSON)."""
    config = json.loads((ns.project_dir / ".chalice" / "config.json").read_text())
    worker = stage_config.worker_settings(config, ns.stage)
    high_worker = stage_config.worker_settings(config, ns.stage, stage_config.HIGH_WORKER_FUNCTION)
    names = stage_config.function_names(config["app_name"], ns.stage)
    plans = usage_plans.load(ns.usage_plans)  # a bad definition stops the deploy before it changes anything
    parameters = _stack_parameters(ns.stage)
    cfn = _client("cloudformation")

    outputs: dict[str, str] = {}
    if "network" not in ns.without:
        outputs |= stacks.deploy(
            cfn, _stack(config, ns.stage, "network"), INFRA / "network.yaml", parameters.get("network", {})
        )
    if "data" not in ns.without:
        _require(outputs, "network", "data")
        outputs |= stacks.deploy(
            cfn,
            _stack(config, ns.stage, "data"),
            INFRA / "data.yaml",
            {
                "SubnetIds": outputs["SubnetIds"],
                "ProxySecurityGroupId": outputs["ProxySecurityGroupId"],
                "DatabaseSecurityGroupId": outputs["DatabaseSecurityGroupId"],
                "RedisSecurityGroupId": outputs["RedisSecurityGroupId"],
                **parameters.get("data", {}),
            },
        )
    secrets = [outputs[k] for k in ("MysqlSecretArn", "RedisAuthSecretArn") if k in outputs]
    outputs |= stacks.deploy(
        cfn,
        _stack(config, ns.stage, "service"),
        INFRA / "service.yaml",
        {
            "QueueName": f"{config['app_name']}-{ns.stage}",
            # One for both jobs queues: six times the longer of their functions' timeouts.
            "VisibilityTimeoutSeconds": str(max(worker.queue_visibility_timeout, high_worker.queue_visibility_timeout)),
            "DeadLetterVisibilityTimeoutSeconds": str(stage_config.dead_letter_visibility_timeout(config, ns.stage)),
            "ApiFunctionName": names[stage_config.API_FUNCTION],
            "WorkerFunctionName": names[stage_config.WORKER_FUNCTION],
            "DeadLetterFunctionName": names[stage_config.DEAD_LETTER_FUNCTION],
            "HighWorkerFunctionName": names[stage_config.HIGH_WORKER_FUNCTION],
            "HighDeadLetterFunctionName": names[stage_config.HIGH_DEAD_LETTER_FUNCTION],
            "SweeperFunctionName": names[stage_config.SWEEP_FUNCTION],
            "MigrateFunctionName": names[stage_config.MIGRATE_FUNCTION],
            "DeliveryFunctionName": names[stage_config.DELIVERY_FUNCTION],
            "WebhooksVisibilityTimeoutSeconds": str(stage_config.webhooks_visibility_timeout(config, ns.stage)),
            "SecretArns": ",".join(secrets),
            "UseVpc": str("SubnetIds" in outputs).lower(),
            **parameters.get("service", {}),
        },
    )

    rendered = stage_config.render(config, ns.stage, outputs, extra_env=dict(ns.env))
    prepare_build_dir(ns.project_dir, ns.build_dir, rendered)
    # app.py names the queues of its SQS triggers from these names when Chalice imports it.
    queue_env = {
        "JOBS_QUEUE_NAME": outputs["JobsQueueName"],
        "JOBS_DLQ_NAME": outputs["DeadLetterQueueName"],
        "JOBS_HIGH_QUEUE_NAME": outputs["HighJobsQueueName"],
        "JOBS_HIGH_DLQ_NAME": outputs["HighDeadLetterQueueName"],
        "WEBHOOKS_QUEUE_NAME": outputs["WebhooksQueueName"],
    }
    awslambda = _client("lambda")
    migrate_function = names[stage_config.MIGRATE_FUNCTION]
    # The schema moves before the code that needs it: on a redeploy the migrate function gets the new
    # package and runs before `chalice deploy` updates the API and the worker. On a first deploy it
    # runs right after, before any API key exists (so before any client can reach the API).
    schema = _migrate_first(ns, awslambda, migrate_function, queue_env)
    _chalice(ns, "deploy", env=queue_env)
    deployed = _deployed(ns)
    # The bytecode in the package is for this interpreter's Python; Chalice chose the runtime.
    bytecode.check_runtime(
        awslambda.get_function_configuration(FunctionName=names[stage_config.API_FUNCTION])["Runtime"]
    )
    if schema is None:
        schema = invoke_migrate(awslambda, migrate_function)

    # Every SQS handler answers with batchItemFailures; only the workers' batching is configured.
    for function, queue_output, batching in (
        (stage_config.WORKER_FUNCTION, "JobsQueueName", worker),
        (stage_config.HIGH_WORKER_FUNCTION, "HighJobsQueueName", high_worker),
        (stage_config.DEAD_LETTER_FUNCTION, "DeadLetterQueueName", None),
        (stage_config.HIGH_DEAD_LETTER_FUNCTION, "HighDeadLetterQueueName", None),
        (stage_config.DELIVERY_FUNCTION, "WebhooksQueueName", None),
    ):
        mapping = _sqs_mapping(deployed, names[function], outputs[queue_output])
        sizes = (
            {}
            if batching is None
            else {"BatchSize": batching.batch_size, "MaximumBatchingWindowInSeconds": batching.batching_window_seconds}
        )
        awslambda.update_event_source_mapping(
            UUID=mapping["event_uuid"], FunctionResponseTypes=REPORT_BATCH_ITEM_FAILURES, **sizes
        )
    rest_api = _resource(deployed, "rest_api")
    api_stage = stage_config.stage_of(rendered, ns.stage).get("api_gateway_stage", "api")
    key_ids = api_keys.bind(
        _client("apigateway"),
        plans,
        prefix=_prefix(config, ns.stage),
        rest_api_id=rest_api["rest_api_id"],
        stage=api_stage,
    )
    _write_tenants(outputs["TenantsUrl"], usage_plans.tenants_document(plans, {c: [k] for c, k in key_ids.items()}))
    signing = webhook_secrets.ensure(_client("secretsmanager"), outputs["WebhookSecretPrefix"], list(plans.clients))
    summary = {
        "stage": ns.stage,
        "api_url": rest_api.get("rest_api_url"),
        "rest_api_id": rest_api["rest_api_id"],
        "api_key_ids": key_ids,
        "queue_url": outputs["JobsQueueUrl"],
        "high_queue_url": outputs["HighJobsQueueUrl"],
        "input_bucket": outputs["InputBucketName"],
        "results_bucket": outputs["ResultsBucketName"],
        "webhooks_queue_url": outputs["WebhooksQueueUrl"],
        "webhook_secrets": signing,
        "schema": schema,
        "stack_outputs": outputs,
    }
    if ns.skip_smoke_test:
        print("smoke test skipped (--skip-smoke-test)", file=sys.stderr)
    else:
        summary["health"] = smoke_test(summary["api_url"])
    print(json.dumps(summary, indent=2))
    print("API key values: aws apigateway get-api-key --include-value --api-key <id>", file=sys.stderr)
    print("webhook signing secrets: aws secretsmanager get-secret-value --secret-id <name>", file=sys.stderr)
    return summary


def _migrate_first(ns: argparse.Namespace, awslambda, function: str, env: dict[str, str]) -> dict | None:
    """If the migrate function exists (a redeploy), give it the new package and run it; the report,
    or None when there is no function yet."""
    try:
        awslambda.get_function_configuration(FunctionName=function)
    except awslambda.exceptions.ResourceNotFoundException:
        return None
    out = ns.build_dir / "package"
    shutil.rmtree(out, ignore_errors=True)
    _chalice(ns, "package", out, env=env)
    awslambda.update_function_code(FunctionName=function, ZipFile=(out / "deployment.zip").read_bytes())
    awslambda.get_waiter("function_updated").wait(FunctionName=function)
    return invoke_migrate(awslambda, function)


def invoke_migrate(awslambda, function: str) -> dict:
    """Run the migrate function (pending migrations, idempotent) and return its report
    (`{"applied": [...], "version": N}`); a failure stops the deploy."""
    reply = awslambda.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=b"{}")
    body = reply["Payload"].read().decode(errors="replace")
    if reply.get("FunctionError"):
        raise SystemExit(f"the schema migration failed ({function}): {body}")
    report = json.loads(body)
    print(f"schema at version {report.get('version')}; applied: {report.get('applied') or 'nothing'}", file=sys.stderr)
    return report


def smoke_test(
    api_url: str,
    *,
    tries: int = 6,
    pause: float = 5.0,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> dict:
    """GET <api_url>health until it answers 200 with every check ok (a new stage can take seconds to
    serve); its JSON, or the deploy stops naming the last answer."""
    url = api_url.rstrip("/") + "/health"
    last = ""
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)
        try:
            with opener(url, timeout=10) as reply:  # type: ignore[attr-defined]
                body = json.loads(reply.read())
                if reply.status == 200 and body.get("status") == "ok":
                    print(f"smoke test: GET {url} answered 200 ok", file=sys.stderr)
                    return body
                last = f"{reply.status} {json.dumps(body)}"
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read().decode(errors='replace')[:500]}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
    raise SystemExit(f"smoke test failed: GET {url} answered {last}")


def _write_tenants(url: str, document: dict) -> None:
    """The tenants document (TENANTS_URL) the functions read: which client each key id is, its limits."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body = json.dumps(document, indent=1).encode()
    _client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def teardown(ns: argparse.Namespace) -> None:
    """Remove the stage: usage plans and keys, the Chalice resources, then the stacks in reverse."""
    config = json.loads((ns.project_dir / ".chalice" / "config.json").read_text())
    api_keys.unbind(_client("apigateway"), prefix=_prefix(config, ns.stage))
    if _deployed_file(ns).exists():
        _chalice(ns, "delete")
    else:
        print(f"no Chalice deploy state in {_deployed_file(ns)}; skipping `chalice delete`", file=sys.stderr)
    cfn = _client("cloudformation")
    service = stacks.outputs(cfn, _stack(config, ns.stage, "service"))
    if service.get("WebhookSecretPrefix"):
        removed = webhook_secrets.delete_all(_client("secretsmanager"), service["WebhookSecretPrefix"])
        print(f"deleted {removed} webhook signing secrets", file=sys.stderr)
    for output, what in (("InputBucketName", "input"), ("ResultsBucketName", "results")):
        bucket = service.get(output)
        if bucket:
            # CloudFormation refuses to delete a bucket that holds objects.
            print(f"emptying the {what} bucket {bucket}: {_empty_bucket(bucket)} objects deleted", file=sys.stderr)
    for part in reversed(STACKS):
        if stacks.delete(cfn, _stack(config, ns.stage, part)):
            print(f"deleted stack {_stack(config, ns.stage, part)}", file=sys.stderr)


def _stack(config: dict, stage: str, part: str) -> str:
    return f"{config['app_name']}-{stage}-{part}"


def _prefix(config: dict, stage: str) -> str:
    """Name prefix of this stage's usage plans and API keys."""
    return f"{config['app_name']}-{stage}-"


def _stack_parameters(stage: str) -> dict[str, dict[str, str]]:
    """infra/stages.json's sizes for `stage` (stack part -> CloudFormation parameters)."""
    return json.loads((INFRA / "stages.json").read_text()).get(stage, {})


def _require(outputs: dict, needed: str, by: str) -> None:
    if "SubnetIds" not in outputs:
        raise SystemExit(f"the {by} stack needs the {needed} stack: drop `--without {needed}` or add `--without {by}`")


def prepare_build_dir(project_dir: Path, build_dir: Path, rendered_config: dict) -> None:
    """A fresh copy of the app with the rendered config, its requirements in vendor/ and bytecode for
    every module (infra/bytecode.py); Chalice's deploy state there survives."""
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source, target = project_dir / name, build_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    (build_dir / ".chalice").mkdir(exist_ok=True)
    (build_dir / ".chalice" / "config.json").write_text(json.dumps(rendered_config, indent=2) + "\n")
    shutil.rmtree(build_dir / "vendor", ignore_errors=True)
    bytecode.vendor_requirements(build_dir)
    bytecode.compile_package(build_dir)


def _chalice(ns: argparse.Namespace, command: str, *args: Path | str, env: dict[str, str] | None = None) -> None:
    argv = [*shlex.split(ns.chalice_command), "--project-dir", str(ns.build_dir), command, "--stage", ns.stage]
    argv += [str(a) for a in args]
    print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    # Chalice's progress goes to stderr, so stdout carries only the deploy's JSON summary.
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})}, stdout=sys.stderr)


def _deployed_file(ns: argparse.Namespace) -> Path:
    return ns.build_dir / ".chalice" / "deployed" / f"{ns.stage}.json"


def _deployed(ns: argparse.Namespace) -> dict:
    return json.loads(_deployed_file(ns).read_text())


def _resource(deployed: dict, resource_type: str) -> dict:
    for resource in deployed["resources"]:
        if resource["resource_type"] == resource_type:
            return resource
    raise SystemExit(f"chalice deployed no {resource_type}")


def _sqs_mapping(deployed: dict, function_name: str, queue: str) -> dict:
    """The `sqs_event` resource (one per SQS handler) subscribing `function_name` to `queue`."""
    for resource in deployed["resources"]:
        if (
            resource["resource_type"] == "sqs_event"
            and resource["queue"] == queue
            and resource["lambda_arn"].endswith(f":function:{function_name}")
        ):
            return resource
    raise SystemExit(f"chalice deployed no SQS trigger of {function_name} on {queue}")


def _empty_bucket(bucket: str) -> int:
    """Delete every object (and every version, should versioning be on) of `bucket`; returns how many."""
    s3 = _client("s3")
    try:
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket))
    except s3.exceptions.NoSuchBucket:
        return 0
    deleted = 0
    for page in pages:
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if batch:  # a page holds at most 1000 keys, DeleteObjects' limit
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    return deleted


def _client(service: str):
    import boto3

    # boto3 honours AWS_ENDPOINT_URL and AWS_REGION / AWS_DEFAULT_REGION by itself.
    return boto3.client(service)


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["deploy", "teardown"])
    parser.add_argument("--stage", required=True, help="a stage of .chalice/config.json (dev, prod)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=["network", "data"],
        help="leave out a stack (emulators: `--without data`, with --env for MySQL and Redis)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help="an extra environment variable for the functions (e.g. MYSQL_URL=...)",
    )
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="where app.py and .chalice/ are")
    parser.add_argument("--build-dir", type=Path, help="the stage's build copy (default infra/.build/<stage>)")
    parser.add_argument("--usage-plans", type=Path, default=usage_plans.DEFAULT_PATH)
    parser.add_argument(
        "--skip-smoke-test",
        action="store_true",
        help="do not GET /health after deploying (emulators that do not serve deployed APIs, as moto)",
    )
    parser.add_argument(
        "--chalice-command",
        default=shlex.quote(str(Path(sys.executable).with_name("chalice"))),
        help="how to run Chalice's CLI (default: the chalice next to this Python)",
    )
    ns = parser.parse_args(argv)
    ns.project_dir = ns.project_dir.resolve()
    ns.build_dir = (ns.build_dir or INFRA / ".build" / ns.stage).resolve()
    return ns


def main(argv: list[str] | None = None) -> None:
    ns = parse_args(argv)
    if ns.action == "deploy":
        deploy(ns)
    else:
        teardown(ns)


if __name__ == "__main__":
    main()
