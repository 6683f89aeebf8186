"""The deploy command end to end against a moto server of this test's own, then its teardown.

What moto cannot do is worked around in tests/support/moto_workarounds.py, named and explained there:
Chalice's Swagger import (the deploy runs Chalice through that module) and the VPC endpoints and
route table moto's DeleteStack leaves. moto's CloudFormation has no RDS Proxy, ElastiCache or
Secrets Manager resources, so the deploy runs with `--without data` and local MySQL/Redis URLs; it
also skips AWS::CloudWatch::Alarm silently, so the alarms are checked by cfn-lint only (test_infra), and
drops the buckets' PublicAccessBlockConfiguration and the results bucket's LifecycleConfiguration
(test_infra checks the template for them).

moto cannot run a function's code here (it wants Docker), so its Lambda runs in moto's "simple"
mode: an invocation answers what the test queued for it. The deploy's invocation of the `migrate`
function is proven by that answer reaching the deploy's summary; the function's packaging by its
configuration and the zip the deploy uploaded; the migration itself runs against the local MariaDB
in tests/test_schema.py. moto serves no deployed API, so the deploy runs with `--skip-smoke-test`
(the smoke test is tested against a loopback server below).
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from chalicelib import schema
from infra import bytecode, deploy, usage_plans
from local import services

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
LOCAL_DATA = {"MYSQL_URL": "mysql://jobs@127.0.0.1:3306/jobs", "REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.fixture
def aws(tmp_path):
    """A moto server for this test alone, and the environment that points boto3 and the deploy at it."""
    proc, url = services.start_moto()
    _moto_api(url, "config", {"lambda": {"use_docker": False}})  # invocations answer what is queued
    env = {**os.environ, **services.FAKE_AWS_ENV, "AWS_ENDPOINT_URL": url, "PYTHONPATH": str(ROOT)}
    env.pop("AWS_PROFILE", None)
    yield env
    proc.terminate()
    proc.wait(timeout=10)


def _moto_api(url: str, path: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{url}/moto-api/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).close()


def run_deploy(action: str, env: dict, build_dir: Path) -> str:
    """Run infra/deploy.py as `make deploy` does, with Chalice run through the moto workaround."""
    argv = [
        sys.executable,
        "-m",
        "infra.deploy",
        action,
        "--stage",
        STAGE,
        "--build-dir",
        str(build_dir),
        "--chalice-command",
        f"{shlex.quote(sys.executable)} -m tests.support.moto_workarounds",
    ]
    if action == "deploy":
        argv += ["--without", "data", "--skip-smoke-test"] + [f"--env={k}={v}" for k, v in LOCAL_DATA.items()]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{action} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_deploy_twice_creates_the_stage_once_and_teardown_removes_it(aws, tmp_path):
    from tests.support.moto_workarounds import delete_what_moto_stacks_leave

    clients = {
        name: boto3.client(name, endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1")
        for name in ("lambda", "apigateway", "sqs", "cloudformation", "ec2", "events", "iam", "s3", "secretsmanager")
    }
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]
    # What the migrate function answers, once per deploy (moto runs no code: see the module docstring).
    reports = [{"applied": ["001_jobs.sql"], "version": 1}, {"applied": [], "version": 1}]
    _moto_api(aws["AWS_ENDPOINT_URL"], "static/lambda-simple/response", {"results": list(map(json.dumps, reports))})

    first = json.loads(run_deploy("deploy", aws, tmp_path / "build"))
    secrets_before = {
        name: clients["secretsmanager"].get_secret_value(SecretId=name)["SecretString"]
        for name in first["webhook_secrets"].values()
    }
    # A second deploy updates in place: no second mapping, plan, key, API or secret.
    summary = json.loads(run_deploy("deploy", aws, tmp_path / "build"))

    # Each deploy invoked the migrate function once and reports the schema it left
    assert [first["schema"], summary["schema"]] == reports
    _assert_migrate_function(clients["lambda"], config, tmp_path / "build")

    outputs = summary["stack_outputs"]
    _assert_functions(clients["lambda"], config, outputs)
    # Two jobs queues (normal, high priority), each with its worker's mapping and its own dead letters.
    for prefix, function in (("", "run_jobs"), ("High", "run_high_jobs")):
        _assert_queue_mapping(clients["lambda"], clients["sqs"], config, outputs, prefix=prefix, function=function)
    for prefix, function in (("", "fail_dead_letters"), ("High", "fail_high_dead_letters")):
        _assert_dead_letter_mapping(
            clients["lambda"], clients["sqs"], config, outputs, prefix=prefix, function=function
        )
    # Five SQS triggers in all: the two workers', the two dead-letter handlers' and the delivery function's.
    mappings = clients["lambda"].list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 5
    assert [m["FunctionResponseTypes"] for m in mappings] == [["ReportBatchItemFailures"]] * 5
    _assert_webhooks(clients["lambda"], clients["sqs"], clients["secretsmanager"], config, outputs, summary)
    secrets_after = {
        name: clients["secretsmanager"].get_secret_value(SecretId=name)["SecretString"] for name in secrets_before
    }
    assert secrets_after == secrets_before  # a redeploy keeps every client's secret
    _assert_sweeper_schedule(clients["events"], clients["lambda"])
    _assert_roles(clients["iam"], outputs)
    _assert_input_bucket(clients["s3"], outputs)
    _assert_results_bucket(clients["s3"], outputs)
    _assert_api_requires_keys(clients["apigateway"], summary["rest_api_id"])
    assert [api["id"] for api in clients["apigateway"].get_rest_apis()["items"]] == [summary["rest_api_id"]]
    _assert_usage_plans(clients["apigateway"], summary["rest_api_id"], config["api_gateway_stage"])
    _assert_tenants(clients["s3"], clients["lambda"], summary)

    delete_what_moto_stacks_leave(clients["ec2"], outputs["VpcId"])
    # An input left in the bucket: teardown empties it, or CloudFormation could not delete it.
    clients["s3"].put_object(Bucket=outputs["InputBucketName"], Key="in/left.csv", Body=b"a\n1\n")
    clients["s3"].put_object(Bucket=outputs["ResultsBucketName"], Key="results/demo/left.json", Body=b"{}")
    run_deploy("teardown", aws, tmp_path / "build")

    assert clients["lambda"].list_functions()["Functions"] == []
    assert clients["lambda"].list_event_source_mappings()["EventSourceMappings"] == []
    assert clients["apigateway"].get_rest_apis()["items"] == []
    assert clients["apigateway"].get_usage_plans()["items"] == []
    assert clients["apigateway"].get_api_keys()["items"] == []
    assert clients["sqs"].list_queues().get("QueueUrls", []) == []
    assert clients["events"].list_rules()["Rules"] == []
    assert clients["s3"].list_buckets()["Buckets"] == []
    assert clients["secretsmanager"].list_secrets()["SecretList"] == []
    assert [r["RoleName"] for r in clients["iam"].list_roles()["Roles"]] == []
    live = [
        s for s in clients["cloudformation"].list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert live == []
    assert outputs["VpcId"] not in [v["VpcId"] for v in clients["ec2"].describe_vpcs()["Vpcs"]]


#: Chalice's function name (after the API handler's `jobs-<stage>`) -> the stack output of its role.
FUNCTIONS = {
    "api_handler": "ApiFunctionRoleArn",
    "run_jobs": "WorkerFunctionRoleArn",
    "run_high_jobs": "WorkerFunctionRoleArn",
    "fail_dead_letters": "DeadLetterFunctionRoleArn",
    "fail_high_dead_letters": "DeadLetterFunctionRoleArn",
    "sweep": "SweeperFunctionRoleArn",
    "migrate": "MigrateFunctionRoleArn",
    "deliver_webhooks": "DeliveryFunctionRoleArn",
}


def _function_name(function: str) -> str:
    return f"jobs-{STAGE}" if function == "api_handler" else f"jobs-{STAGE}-{function}"


def _assert_functions(awslambda, config, outputs):
    for name, role_output in FUNCTIONS.items():
        function = awslambda.get_function_configuration(FunctionName=_function_name(name))
        settings = config["lambda_functions"][name]
        assert function["Role"] == outputs[role_output], name
        assert function["Timeout"] == settings["lambda_timeout"]
        assert function["MemorySize"] == settings["lambda_memory_size"]
        assert function["Runtime"] == bytecode.RUNTIME  # the Python the package's bytecode is for
        env = function["Environment"]["Variables"]
        assert env["JOBS_QUEUE_URL"] == outputs["JobsQueueUrl"]
        assert env["JOBS_QUEUE_NAME"] == f"jobs-{STAGE}"
        assert env["JOBS_DLQ_NAME"] == f"jobs-{STAGE}-dlq" == outputs["DeadLetterQueueName"]
        assert env["JOBS_HIGH_QUEUE_URL"] == outputs["HighJobsQueueUrl"]
        assert env["JOBS_HIGH_QUEUE_NAME"] == f"jobs-{STAGE}-high" == outputs["HighJobsQueueName"]
        assert env["JOBS_HIGH_DLQ_NAME"] == f"jobs-{STAGE}-high-dlq" == outputs["HighDeadLetterQueueName"]
        assert env["INPUT_BUCKETS"] == outputs["InputBucketName"]
        assert env["RESULTS_BUCKET"] == outputs["ResultsBucketName"]
        assert env["WORK_BUCKET"] == outputs["WorkBucketName"] == outputs["ResultsBucketName"]
        assert env["TENANTS_URL"] == outputs["TenantsUrl"]  # the worker reads maxRunningJobs from it
        assert env["MYSQL_URL"] == LOCAL_DATA["MYSQL_URL"] and env["REDIS_URL"] == LOCAL_DATA["REDIS_URL"]
        assert env["REDIS_PREFIX"] == config["environment_variables"]["REDIS_PREFIX"]
        # The delivery function alone runs in the subnets with a route out (to clients' receivers).
        subnets, group = (
            ("DeliverySubnetIds", "DeliverySecurityGroupId")
            if name == "deliver_webhooks"
            else ("SubnetIds", "FunctionSecurityGroupId")
        )
        assert sorted(function["VpcConfig"]["SubnetIds"]) == sorted(outputs[subnets].split(","))
        assert function["VpcConfig"]["SecurityGroupIds"] == [outputs[group]]
        assert env["WEBHOOKS_QUEUE_URL"] == outputs["WebhooksQueueUrl"]
        assert env["WEBHOOK_SECRET_PREFIX"] == f"jobs-{STAGE}/webhook-secret/" == outputs["WebhookSecretPrefix"]
    for name in ("run_jobs", "run_high_jobs"):  # each worker its own concurrency: neither takes the other's
        concurrency = awslambda.get_function_concurrency(FunctionName=_function_name(name))
        assert concurrency["ReservedConcurrentExecutions"] == config["lambda_functions"][name]["reserved_concurrency"]


def _assert_migrate_function(awslambda, config, build_dir: Path):
    """The migrate function runs app.migrate with the schema's files in its package, no trigger."""
    function = awslambda.get_function_configuration(FunctionName=_function_name("migrate"))
    assert function["Handler"] == "app.migrate"
    assert function["Timeout"] == config["lambda_functions"]["migrate"]["lambda_timeout"]
    assert awslambda.list_event_source_mappings(FunctionName=function["FunctionName"])["EventSourceMappings"] == []
    # The package the redeploy gave it before `chalice deploy` ran (and Chalice's own is the same build).
    with zipfile.ZipFile(build_dir / "package" / "deployment.zip") as package:
        names = set(package.namelist())
    assert {"app.py", "chalicelib/schema.py"} <= names
    assert {f"chalicelib/migrations/{path.name}" for _, path in schema.pending(set())} <= names
    assert not any(name.startswith(("tests/", "bench/", "infra/", "local/", "boto3/")) for name in names)


def _assert_queue_mapping(awslambda, sqs, config, outputs, *, prefix: str, function: str):
    worker = config["lambda_functions"][function]
    queue_arn = outputs[f"{prefix}JobsQueueArn"]
    [mapping] = awslambda.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
    assert mapping["FunctionArn"].endswith(f":function:jobs-{STAGE}-{function}")
    assert mapping["BatchSize"] == worker["sqs_batch_size"]
    assert mapping["MaximumBatchingWindowInSeconds"] == worker["sqs_maximum_batching_window_in_seconds"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    attributes = sqs.get_queue_attributes(QueueUrl=outputs[f"{prefix}JobsQueueUrl"], AttributeNames=["All"])
    assert int(attributes["Attributes"]["VisibilityTimeout"]) >= 6 * worker["lambda_timeout"]
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == outputs[f"{prefix}DeadLetterQueueArn"]


def _assert_dead_letter_mapping(awslambda, sqs, config, outputs, *, prefix: str, function: str):
    mappings = awslambda.list_event_source_mappings(EventSourceArn=outputs[f"{prefix}DeadLetterQueueArn"])
    [mapping] = mappings["EventSourceMappings"]
    assert mapping["FunctionArn"].endswith(f":function:jobs-{STAGE}-{function}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10  # app.py's decorator
    dlq_url = sqs.get_queue_url(QueueName=outputs[f"{prefix}DeadLetterQueueArn"].rsplit(":", 1)[1])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == 6 * config["lambda_functions"]["fail_dead_letters"]["lambda_timeout"]


def _assert_webhooks(awslambda, sqs, secretsmanager, config, outputs, summary):
    """The delivery function's trigger answers partial batches; each client has its signing secret."""
    [mapping] = awslambda.list_event_source_mappings(EventSourceArn=outputs["WebhooksQueueArn"])["EventSourceMappings"]
    assert mapping["FunctionArn"].endswith(f":function:jobs-{STAGE}-deliver_webhooks")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    attributes = sqs.get_queue_attributes(QueueUrl=outputs["WebhooksQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == 6 * config["lambda_functions"]["deliver_webhooks"]["lambda_timeout"]
    clients = sorted(usage_plans.load().clients)
    assert sorted(summary["webhook_secrets"]) == clients
    for client, name in summary["webhook_secrets"].items():
        assert name == f"jobs-{STAGE}/webhook-secret/{client}"
        assert secretsmanager.get_secret_value(SecretId=name)["SecretString"].startswith("whsec_")


def _assert_sweeper_schedule(events, awslambda):
    [rule] = events.list_rules()["Rules"]
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == awslambda.get_function_configuration(FunctionName=_function_name("sweep"))["FunctionArn"]


def _grants(iam, role_arn: str) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(actions, resources) of every statement of the role's policies, both sorted."""
    role = role_arn.rsplit("/", 1)[1]
    grants = set()
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            # moto 5.2.5 stores a CloudFormation role's inline policy as Python's repr of the dict
            # (AWS answers URL-encoded JSON, which boto3 decodes to a dict).
            document = ast.literal_eval(urllib.parse.unquote(document))
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            grants.add((tuple(sorted(_list(statement["Action"]))), tuple(sorted(_list(statement["Resource"])))))
    return grants


def _assert_tenants(s3, awslambda, summary):
    """The deploy wrote the tenants document the functions read: each client's key id and job limits."""
    url = summary["stack_outputs"]["TenantsUrl"]
    bucket, _, key = url.removeprefix("s3://").partition("/")
    written = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    plans = usage_plans.load()
    assert set(written["clients"]) == set(plans.clients)
    for name, client in plans.clients.items():
        plan = plans.plans[client.plan]
        assert written["clients"][name] == {
            "plan": plan.name,
            "keyIds": [summary["api_key_ids"][name]],
            "limits": {
                "maxActiveJobs": plan.max_active_jobs,
                "maxRunningJobs": plan.max_running_jobs,
                "maxTimeoutSeconds": plan.max_timeout_seconds,
                "maxSchedules": plan.max_schedules,
            },
        }
    api = awslambda.get_function_configuration(FunctionName=_function_name("api_handler"))
    assert api["Environment"]["Variables"]["TENANTS_URL"] == url


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _assert_roles(iam, outputs):
    """Each function's role reaches only its own log group, its queue and (the worker; the API for
    uploads and the check at submit, under inputs/) the input bucket."""
    jobs_queue, dlq, webhooks = outputs["JobsQueueArn"], outputs["DeadLetterQueueArn"], outputs["WebhooksQueueArn"]
    high_queue, high_dlq = outputs["HighJobsQueueArn"], outputs["HighDeadLetterQueueArn"]
    jobs_queues = tuple(sorted((jobs_queue, high_queue)))
    bucket = f"arn:aws:s3:::{outputs['InputBucketName']}"
    results = f"arn:aws:s3:::{outputs['ResultsBucketName']}/results/*"
    expected = {
        "api_handler": {
            (("sqs:SendMessage",), tuple(sorted((jobs_queue, high_queue, webhooks)))),
            (("s3:GetObject", "s3:PutObject"), (f"{bucket}/inputs/*",)),
            (("s3:ListBucket",), (bucket,)),
            (("s3:GetObject",), (results,)),
            (("s3:GetObject",), (f"arn:aws:s3:::{outputs['ResultsBucketName']}/config/*",)),
        },
        "run_jobs": {
            (
                (
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ),
                jobs_queues,
            ),
            (("s3:GetObject",), (f"{bucket}/*",)),
            (("s3:ListBucket",), (bucket,)),
            (("s3:PutObject",), (results,)),
            (("s3:GetObject", "s3:PutObject"), (f"arn:aws:s3:::{outputs['ResultsBucketName']}/jobs/*",)),
            (("s3:GetObject",), (f"arn:aws:s3:::{outputs['ResultsBucketName']}/config/*",)),
            (("s3:ListBucket",), (f"arn:aws:s3:::{outputs['ResultsBucketName']}",)),
            (("sqs:SendMessage",), (webhooks,)),
        },
        "fail_dead_letters": {
            (("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"), tuple(sorted((dlq, high_dlq)))),
            # an innocent job goes out again, to its own queue
            (("sqs:SendMessage",), tuple(sorted((jobs_queue, high_queue, webhooks)))),
        },
        "sweep": {
            (("sqs:GetQueueAttributes", "sqs:SendMessage"), jobs_queues),
            (("sqs:SendMessage",), (webhooks,)),
            (("s3:DeleteObject",), (results,)),
        },
        "migrate": set(),  # its logs, the secrets and the VPC only
        "deliver_webhooks": {
            (("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:SendMessage"), (webhooks,)),
            (("s3:GetObject",), (results,)),
        },
    }
    # The high-priority worker and dead-letter handler share the normal ones' roles (and rights).
    expected["run_high_jobs"], expected["fail_high_dead_letters"] = expected["run_jobs"], expected["fail_dead_letters"]
    for function, role_output in FUNCTIONS.items():
        grants = _grants(iam, outputs[role_output])
        [logs] = [g for g in grants if g[0] == ("logs:CreateLogStream", "logs:PutLogEvents")]
        # AWS's LogGroup.Arn ends in `:*` (the group's streams); moto's does not. A role's groups are
        # those of the functions that have it.
        sharing = [name for name, output in FUNCTIONS.items() if output == role_output]
        assert sorted(arn.removesuffix(":*") for arn in logs[1]) == sorted(
            f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{_function_name(name)}" for name in sharing
        )
        # Network interfaces (VPC) and the stage's secrets are common to all four; the rest is each one's own.
        assert any(g[0][0].startswith("ec2:") for g in grants), f"{function} cannot attach to the VPC"
        own = {g for g in grants if g != logs and not g[0][0].startswith(("ec2:", "secretsmanager:"))}
        assert own == expected[function], function


def _assert_input_bucket(s3, outputs):
    # (moto's CloudFormation drops PublicAccessBlockConfiguration: tests/test_infra.py checks the template.)
    rules = s3.get_bucket_encryption(Bucket=outputs["InputBucketName"])["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def _assert_results_bucket(s3, outputs):
    bucket = outputs["ResultsBucketName"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto 5.2.5's CloudFormation drops LifecycleConfiguration too: tests/test_infra.py checks the expiry.


def _assert_api_requires_keys(apigw, rest_api_id):
    resources = {r["path"]: r for r in apigw.get_resources(restApiId=rest_api_id)["items"]}
    routes = [
        ("/jobs", "POST"),
        ("/jobs", "GET"),
        ("/jobs/{job_id}", "GET"),
        ("/jobs/{job_id}", "DELETE"),
        ("/uploads", "POST"),
        ("/jobs/{job_id}/result", "GET"),
    ]
    for path, method in routes:
        found = apigw.get_method(restApiId=rest_api_id, resourceId=resources[path]["id"], httpMethod=method)
        assert found["apiKeyRequired"] is True, f"{method} {path}"
        assert found["methodIntegration"]["type"] == "AWS_PROXY"


def _assert_usage_plans(apigw, rest_api_id, api_stage):
    definition = usage_plans.load()
    deployed = {p["name"]: p for p in apigw.get_usage_plans()["items"]}
    assert set(deployed) == {f"jobs-{STAGE}-{name}" for name in definition.plans}
    keys = {k["id"]: k["name"] for k in apigw.get_api_keys()["items"]}
    assert sorted(keys.values()) == sorted(f"jobs-{STAGE}-{name}" for name in definition.clients)
    for name, plan in definition.plans.items():
        found = deployed[f"jobs-{STAGE}-{name}"]
        assert found["apiStages"] == [{"apiId": rest_api_id, "stage": api_stage}]
        assert found["throttle"] == {"rateLimit": plan.rate_limit, "burstLimit": plan.burst_limit}
        assert found["quota"]["limit"] == plan.quota.limit and found["quota"]["period"] == plan.quota.period
        bound = {keys[k["id"]] for k in apigw.get_usage_plan_keys(usagePlanId=found["id"])["items"]}
        assert bound == {f"jobs-{STAGE}-{c.name}" for c in definition.clients_of(name)}


# --- the smoke test ------------------------------------------------------------------------------------
@pytest.fixture
def health_server():
    """A loopback server answering GET /health with the queued (status, body) replies, then 200 ok."""
    replies: list[tuple[int, dict]] = []
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            paths.append(self.path)
            status, body = replies.pop(0) if replies else (200, {"status": "ok", "checks": {}})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/", replies, paths
    server.shutdown()


def test_the_smoke_test_waits_for_the_stage_to_answer_health(health_server):
    url, replies, paths = health_server
    replies += [(503, {"code": "ServiceUnavailable", "status": "unavailable"}), (403, {"message": "Forbidden"})]

    body = deploy.smoke_test(url, tries=3, pause=0)

    assert body["status"] == "ok" and paths == ["/api/health"] * 3


def test_the_smoke_test_stops_the_deploy_naming_the_last_answer(health_server):
    url, replies, _ = health_server
    down = {"code": "ServiceUnavailable", "message": "unavailable: mysql", "status": "unavailable"}
    replies += [(503, down)] * 2

    with pytest.raises(SystemExit, match="smoke test failed: GET .*/api/health answered 503 .*unavailable: mysql"):
        deploy.smoke_test(url, tries=2, pause=0)
