"""infra/ without deploying: templates and Chalice's package are lint-clean, the definitions hold."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import bytecode, deploy, stage_config, usage_plans

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "infra").glob("*.yaml"))
CFN_LINT = str(Path(sys.executable).with_name("cfn-lint"))
CHALICE = str(Path(sys.executable).with_name("chalice"))
CHALICE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
#: Stack outputs shaped like AWS's, for rendering a stage without deploying one.
SAMPLE_OUTPUTS = {
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "FunctionSecurityGroupId": "sg-0123456789abcdef0",
    "ApiFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-api",
    "WorkerFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-worker",
    "DeadLetterFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-dead-letters",
    "SweeperFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-sweeper",
    "MigrateFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-migrate",
    "DeliveryFunctionRoleArn": "arn:aws:iam::123456789012:role/jobs-prod-webhooks",
    "DeliverySubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
    "DeliverySecurityGroupId": "sg-0123456789abcdef1",
    "WebhooksQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-prod-webhooks",
    "WebhooksQueueName": "jobs-prod-webhooks",
    "WebhookSecretPrefix": "jobs-prod/webhook-secret/",
    "JobsQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-prod",
    "JobsQueueName": "jobs-prod",
    "DeadLetterQueueName": "jobs-prod-dlq",
    "HighJobsQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-prod-high",
    "HighJobsQueueName": "jobs-prod-high",
    "HighDeadLetterQueueName": "jobs-prod-high-dlq",
    "InputBucketName": "jobs-prod-service-inputbucket-0123456789ab",
    "ResultsBucketName": "jobs-prod-service-resultsbucket-0123456789ab",
    "WorkBucketName": "jobs-prod-service-resultsbucket-0123456789ab",
    "TenantsUrl": "s3://jobs-prod-service-resultsbucket-0123456789ab/config/tenants.json",
    "MysqlUrl": "mysql://jobs@jobs-prod-data.proxy-abc.us-east-1.rds.amazonaws.com:3306/jobs",
    "MysqlSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
    "MysqlTls": "on",
    "RedisUrl": "rediss://master.jobs-prod.abc.use1.cache.amazonaws.com:6379/0",
    "RedisAuthSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:redis-AbCdEf",
}


def cfn_lint(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([CFN_LINT, "--format", "parseable", *map(str, paths)], capture_output=True, text=True)


def test_every_template_is_lint_clean():
    assert {t.name for t in TEMPLATES} == {"network.yaml", "data.yaml", "service.yaml"}
    done = cfn_lint(*TEMPLATES)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["InputBucket", "ResultsBucket"])
def test_the_buckets_are_encrypted_private_and_tls_only(name):
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(ROOT / "infra" / "service.yaml"))["Resources"]
    bucket = resources[name]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert set(bucket["PublicAccessBlockConfiguration"]) == {
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    }
    assert all(value is True for value in bucket["PublicAccessBlockConfiguration"].values())
    [deny] = resources[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_input_bucket_takes_browser_uploads_by_post_only_and_the_api_signs_under_inputs():
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(ROOT / "infra" / "service.yaml"))["Resources"]
    [rule] = resources["InputBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["POST"] and rule["AllowedOrigins"] == {"Ref": "UploadOrigins"}
    [policy] = resources["ApiFunctionRole"]["Properties"]["Policies"]
    s3 = [
        st
        for st in policy["PolicyDocument"]["Statement"]
        if str(st["Action"]).startswith("['s3:") or str(st["Action"]).startswith("s3:")
    ]
    assert {str(st["Resource"]) for st in s3} == {
        str({"Fn::Sub": "${InputBucket.Arn}/inputs/*"}),
        str({"Fn::GetAtt": ["InputBucket", "Arn"]}),
        str({"Fn::Sub": "${ResultsBucket.Arn}/results/*"}),
        str({"Fn::Sub": "${ResultsBucket.Arn}/config/*"}),
    }


def test_the_dead_letter_handler_may_send_to_the_jobs_queues_and_only_consume_its_own():
    # It sends an innocent job again (sweeper.py) to the job's own queue, and a poisoned job's
    # webhook; it receives and deletes only dead letters (of both dead-letter queues: the role is
    # fail_dead_letters' and fail_high_dead_letters').
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(ROOT / "infra" / "service.yaml"))["Resources"]
    [policy] = resources["DeadLetterFunctionRole"]["Properties"]["Policies"]
    sqs = {
        (str(st["Action"]), str(st["Resource"]))
        for st in policy["PolicyDocument"]["Statement"]
        if "sqs:" in str(st["Action"])
    }
    assert sqs == {
        (
            str(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]),
            str([{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, {"Fn::GetAtt": ["HighDeadLetterQueue", "Arn"]}]),
        ),
        (
            "sqs:SendMessage",
            str(
                [
                    {"Fn::GetAtt": ["JobsQueue", "Arn"]},
                    {"Fn::GetAtt": ["HighJobsQueue", "Arn"]},
                    {"Fn::GetAtt": ["WebhooksQueue", "Arn"]},
                ]
            ),
        ),
    }


def test_result_and_work_objects_expire_a_day_after_the_default_retention():
    from cfnlint.decode import cfn_yaml

    from chalicelib.config import Settings

    template = cfn_yaml.load(str(ROOT / "infra" / "service.yaml"))
    rules = template["Resources"]["ResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [(r["Status"], r["Prefix"]) for r in rules] == [("Enabled", "results/"), ("Enabled", "jobs/")]
    assert all(r["ExpirationInDays"] == {"Ref": "ResultExpiryDays"} for r in rules)
    retention_days = Settings().retention_seconds // 86400
    assert template["Parameters"]["ResultExpiryDays"]["Default"] == retention_days + 1


def test_redis_never_evicts_and_an_alarm_watches_its_memory():
    # Issue 16: ElastiCache's default volatile-lru evicted a running job's checkpoint.
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(ROOT / "infra" / "data.yaml"))["Resources"]
    redis = resources["Redis"]["Properties"]
    group = resources[redis["CacheParameterGroupName"]["Ref"]]
    assert group["Type"] == "AWS::ElastiCache::ParameterGroup"
    assert group["Properties"]["CacheParameterGroupFamily"] == "redis" + redis["EngineVersion"].split(".")[0]
    assert group["Properties"]["Properties"] == {"maxmemory-policy": "noeviction"}
    [alarm] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage")
    assert alarm["Dimensions"] == [{"Name": "CacheClusterId", "Value": {"Fn::Sub": "${Redis}-001"}}]
    assert alarm["Threshold"] == {"Ref": "CacheMemoryAlarmPercent"}


def chalice_package(config: dict, stage: str, tmp_path: Path) -> Path:
    """`chalice package` of `config`'s stage from a build copy of the app; returns sam.json's path."""
    deploy.prepare_build_dir(ROOT, tmp_path / "app", config)
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "JOBS_QUEUE_NAME": f"jobs-{stage}",
        "JOBS_DLQ_NAME": f"jobs-{stage}-dlq",
        "JOBS_HIGH_QUEUE_NAME": f"jobs-{stage}-high",
        "JOBS_HIGH_DLQ_NAME": f"jobs-{stage}-high-dlq",
    }
    subprocess.run(
        [CHALICE, "--project-dir", str(tmp_path / "app"), "package", "--stage", stage, str(tmp_path / "out")],
        check=True,
        env=env,
        capture_output=True,
    )
    return tmp_path / "out" / "sam.json"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_package_of_the_stage_as_deployed_is_lint_clean(stage, tmp_path):
    sam = chalice_package(stage_config.render(CHALICE_CONFIG, stage, SAMPLE_OUTPUTS), stage, tmp_path)
    resources = json.loads(sam.read_text())["Resources"]
    worker = resources["RunJobs"]["Properties"]
    assert worker["VpcConfig"]["SubnetIds"] == SAMPLE_OUTPUTS["SubnetIds"].split(",")
    assert worker["Role"] == SAMPLE_OUTPUTS["WorkerFunctionRoleArn"]
    assert worker["Environment"]["Variables"]["MYSQL_SECRET_ARN"] == SAMPLE_OUTPUTS["MysqlSecretArn"]
    assert worker["Environment"]["Variables"]["INPUT_BUCKETS"] == SAMPLE_OUTPUTS["InputBucketName"]
    assert worker["Environment"]["Variables"]["RESULTS_BUCKET"] == SAMPLE_OUTPUTS["ResultsBucketName"]
    assert worker["Environment"]["Variables"]["WORK_BUCKET"] == SAMPLE_OUTPUTS["WorkBucketName"]
    dead_letters, sweeper = resources["FailDeadLetters"]["Properties"], resources["Sweep"]["Properties"]
    assert dead_letters["Role"] == SAMPLE_OUTPUTS["DeadLetterFunctionRoleArn"]
    assert sweeper["Role"] == SAMPLE_OUTPUTS["SweeperFunctionRoleArn"]
    # Chalice puts the stage's environment into os.environ before importing app.py, so the rendered
    # JOBS_DLQ_NAME names the trigger's queue (an Fn::Sub of its ARN).
    queue = dead_letters["Events"]["FailDeadLettersSqsEventSource"]["Properties"]["Queue"]
    assert queue["Fn::Sub"].endswith(":" + SAMPLE_OUTPUTS["DeadLetterQueueName"])
    assert sweeper["Events"]["SweepEvent"]["Properties"]["Schedule"] == "rate(1 minute)"
    # The high-priority worker and dead-letter handler: the normal ones' roles, their own triggers,
    # the high worker its own reserved concurrency (a normal backlog cannot take its capacity).
    high, high_dead_letters = resources["RunHighJobs"]["Properties"], resources["FailHighDeadLetters"]["Properties"]
    assert high["Role"] == SAMPLE_OUTPUTS["WorkerFunctionRoleArn"]
    assert high_dead_letters["Role"] == SAMPLE_OUTPUTS["DeadLetterFunctionRoleArn"]
    assert (
        high["ReservedConcurrentExecutions"]
        == CHALICE_CONFIG["stages"][stage]["lambda_functions"]["run_high_jobs"]["reserved_concurrency"]
    )
    assert high["Environment"]["Variables"]["JOBS_HIGH_QUEUE_URL"] == SAMPLE_OUTPUTS["HighJobsQueueUrl"]
    high_queue = high["Events"]["RunHighJobsSqsEventSource"]["Properties"]["Queue"]
    assert high_queue["Fn::Sub"].endswith(":" + SAMPLE_OUTPUTS["HighJobsQueueName"])
    high_dlq = high_dead_letters["Events"]["FailHighDeadLettersSqsEventSource"]["Properties"]["Queue"]
    assert high_dlq["Fn::Sub"].endswith(":" + SAMPLE_OUTPUTS["HighDeadLetterQueueName"])
    # The migrate function: in the VPC with the others (MySQL is reachable only there), its own role.
    migrate = resources["Migrate"]["Properties"]
    assert migrate["Handler"] == "app.migrate" and "Events" not in migrate
    assert migrate["VpcConfig"]["SubnetIds"] == SAMPLE_OUTPUTS["SubnetIds"].split(",")
    assert migrate["Role"] == SAMPLE_OUTPUTS["MigrateFunctionRoleArn"]
    assert migrate["Environment"]["Variables"]["MYSQL_SECRET_ARN"] == SAMPLE_OUTPUTS["MysqlSecretArn"]
    done = cfn_lint(sam)
    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_dev_stage_packages_without_any_stack(tmp_path):
    # `chalice package --stage dev` of the committed config: no outputs, Chalice makes the role.
    done = cfn_lint(chalice_package(CHALICE_CONFIG, "dev", tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_ships_unchecked_bytecode_for_every_module_and_imports_from_it(tmp_path):
    sam = chalice_package(CHALICE_CONFIG, "dev", tmp_path)
    runtimes = {
        r["Properties"]["Runtime"]
        for r in json.loads(sam.read_text())["Resources"].values()
        if "Runtime" in r.get("Properties", {})
    }
    with zipfile.ZipFile(sam.with_name("deployment.zip")) as archive:
        names = set(archive.namelist())
        sources = sorted(n for n in names if n.endswith(".py"))
        pycs = {n: archive.read(n) for n in names if n.endswith(".pyc")}
        archive.extractall(tmp_path / "unpacked")

    assert runtimes == {bytecode.RUNTIME}  # what Chalice runs the functions on is what was compiled for
    assert {"app.py", "chalicelib/worker.py", "redis/client.py", "pymysql/connections.py"} <= set(sources)
    assert [s for s in sources if importlib.util.cache_from_source(s) not in pycs] == []
    magic = importlib.util.MAGIC_NUMBER
    # PEP 552 header: the magic number, then flags 0b01 (hash-based, never checked against the source).
    assert {(pyc[:4], int.from_bytes(pyc[4:8], "little")) for pyc in pycs.values()} == {(magic, 0b01)}
    assert not (tmp_path / "unpacked" / "bin").exists()  # pip's console scripts stay out
    # The sources may change (here: break) without the import noticing: it reads only the bytecode.
    unpacked = tmp_path / "unpacked"
    for module in ("app.py", "chalicelib/worker.py", "chalicelib/service.py", "redis/client.py"):
        (unpacked / module).write_text("raise SystemExit('compiled from source')\n")
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import app, chalicelib.worker, redis; print('ok')"],
        env={"PYTHONPATH": str(unpacked), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_a_runtime_other_than_the_compiling_pythons_is_refused():
    bytecode.check_runtime(bytecode.RUNTIME)
    with pytest.raises(
        bytecode.RuntimeMismatch,
        match=f"the functions run python3.99 but the package's bytecode is for {bytecode.RUNTIME}",
    ):
        bytecode.check_runtime("python3.99")


@pytest.mark.parametrize("stage", sorted(CHALICE_CONFIG["stages"]))
def test_queue_visibility_timeout_is_six_worker_timeouts(stage):
    worker = stage_config.worker_settings(CHALICE_CONFIG, stage)
    function_timeout = CHALICE_CONFIG["stages"][stage]["lambda_functions"]["run_jobs"]["lambda_timeout"]
    assert worker.queue_visibility_timeout == 6 * function_timeout
    assert worker.queue_visibility_timeout <= 43200  # SQS's maximum visibility timeout (12 hours)


@pytest.mark.parametrize("stage", sorted(CHALICE_CONFIG["stages"]))
def test_dead_letter_queue_visibility_timeout_is_six_handler_timeouts(stage):
    handler = CHALICE_CONFIG["stages"][stage]["lambda_functions"]["fail_dead_letters"]
    assert stage_config.dead_letter_visibility_timeout(CHALICE_CONFIG, stage) == 6 * handler["lambda_timeout"]


@pytest.mark.parametrize("stage", sorted(CHALICE_CONFIG["stages"]))
def test_rendered_stage_carries_every_output_the_functions_read(stage):
    section = stage_config.render(CHALICE_CONFIG, stage, SAMPLE_OUTPUTS)["stages"][stage]
    env = section["environment_variables"]
    assert {var: env[var] for var in stage_config.OUTPUT_ENV.values()} == {
        var: SAMPLE_OUTPUTS[key] for key, var in stage_config.OUTPUT_ENV.items()
    }
    assert section["security_group_ids"] == [SAMPLE_OUTPUTS["FunctionSecurityGroupId"]]
    assert section["manage_iam_role"] is False
    roles = {name: function["iam_role_arn"] for name, function in section["lambda_functions"].items()}
    assert roles == {
        "api_handler": SAMPLE_OUTPUTS["ApiFunctionRoleArn"],
        "run_jobs": SAMPLE_OUTPUTS["WorkerFunctionRoleArn"],
        "run_high_jobs": SAMPLE_OUTPUTS["WorkerFunctionRoleArn"],
        "fail_dead_letters": SAMPLE_OUTPUTS["DeadLetterFunctionRoleArn"],
        "fail_high_dead_letters": SAMPLE_OUTPUTS["DeadLetterFunctionRoleArn"],
        "sweep": SAMPLE_OUTPUTS["SweeperFunctionRoleArn"],
        "migrate": SAMPLE_OUTPUTS["MigrateFunctionRoleArn"],
        "deliver_webhooks": SAMPLE_OUTPUTS["DeliveryFunctionRoleArn"],
    }
    # Only the delivery function runs in the subnets with a route out (webhooks to clients' receivers).
    delivery = section["lambda_functions"]["deliver_webhooks"]
    assert delivery["subnet_ids"] == SAMPLE_OUTPUTS["DeliverySubnetIds"].split(",")
    assert delivery["security_group_ids"] == [SAMPLE_OUTPUTS["DeliverySecurityGroupId"]]
    others = [f for name, f in section["lambda_functions"].items() if name != "deliver_webhooks"]
    assert not any("subnet_ids" in f for f in others)
    assert CHALICE_CONFIG["stages"][stage].get("subnet_ids") is None  # the committed file stays clean


@pytest.mark.parametrize("stage", sorted(CHALICE_CONFIG["stages"]))
def test_webhooks_queue_visibility_timeout_is_six_delivery_timeouts(stage):
    handler = CHALICE_CONFIG["stages"][stage]["lambda_functions"]["deliver_webhooks"]
    assert stage_config.webhooks_visibility_timeout(CHALICE_CONFIG, stage) == 6 * handler["lambda_timeout"]


def test_only_the_delivery_function_has_a_route_out_and_only_https_and_mysql_leave_it():
    network = yaml_load(ROOT / "infra" / "network.yaml")["Resources"]
    routes = {name: r["Properties"] for name, r in network.items() if r["Type"] == "AWS::EC2::Route"}
    assert {name: (p["RouteTableId"], "NatGatewayId" in p) for name, p in routes.items()} == {
        "PublicDefaultRoute": ({"Ref": "PublicRouteTable"}, False),
        "DeliveryDefaultRoute": ({"Ref": "DeliveryRouteTable"}, True),
    }
    private = {
        r["Properties"]["RouteTableId"]["Ref"]
        for r in network.values()
        if r["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
        and r["Properties"]["SubnetId"]["Ref"].startswith("Private")
    }
    assert private == {"PrivateRouteTable"}
    egress = network["DeliverySecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert sorted((rule["FromPort"], rule["ToPort"]) for rule in egress) == [(443, 443), (3306, 3306)]


def test_the_roles_that_end_jobs_may_queue_webhooks_and_only_api_and_delivery_read_secrets():
    service = yaml_load(ROOT / "infra" / "service.yaml")["Resources"]

    def statements(role):
        return [
            st for policy in service[role]["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]
        ]

    def may(role, action, resource):
        for st in statements(role):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if action in actions and any(json.dumps(resource) in json.dumps(r) for r in resources):
                return True
        return False

    webhooks = {"Fn::GetAtt": ["WebhooksQueue", "Arn"]}
    for role in ("ApiFunctionRole", "WorkerFunctionRole", "DeadLetterFunctionRole", "SweeperFunctionRole"):
        assert may(role, "sqs:SendMessage", webhooks), role
    assert may("DeliveryFunctionRole", "sqs:ReceiveMessage", webhooks)
    readers = {
        role
        for role in service
        if role.endswith("FunctionRole")
        and any("secretsmanager:GetSecretValue" in json.dumps(st["Action"]) for st in statements(role))
    }
    assert readers == {"ApiFunctionRole", "DeliveryFunctionRole"}


def yaml_load(path):
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(path))


def test_usage_plan_definition_loads():
    plans = usage_plans.load()
    assert plans.plans and plans.clients
    for client in plans.clients.values():
        assert client.plan in plans.plans
        assert client.value is None, "committed keys would be public: let API Gateway generate them"


LIMITS = '"maxActiveJobs": 9, "maxRunningJobs": 2, "maxTimeoutSeconds": 60'


@pytest.mark.parametrize(
    "text, complaint",
    [
        ('{"plans": {}, "clients": {}}', "plans"),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 0, "quota": null, ' + LIMITS + '}}, "clients": {}}',
            "plans/a/burstLimit",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": {"limit": 5, "period": "YEAR"}, '
            + LIMITS
            + "}},"
            ' "clients": {}}',
            "plans/a/quota",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": null, "maxActiveJobs": -1,'
            ' "maxRunningJobs": 2, "maxTimeoutSeconds": 60}}, "clients": {}}',
            "plans/a/maxActiveJobs: -1 is less than the minimum of 1",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": null, "maxActiveJobs": 9,'
            ' "maxTimeoutSeconds": 60}}, "clients": {}}',
            "plans/a: 'maxRunningJobs' is a required property",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": null, '
            + LIMITS
            + '}}, "clients": {"x": {"plan": "b"}}}',
            "no plan named 'b'",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": null, ' + LIMITS + "}},"
            ' "clients": {"x": {"plan": "a"}, "x": {"plan": "a"}}}',
            "duplicate name 'x'",
        ),
        (
            '{"plans": {"a": {"rateLimit": 1, "burstLimit": 1, "quota": null, ' + LIMITS + "}},"
            ' "clients": {"x": {"plan": "a", "value": "short"}}}',
            "clients/x/value",
        ),
    ],
)
def test_usage_plan_definition_refuses_mistakes(tmp_path, text, complaint):
    path = tmp_path / "plans.json"
    path.write_text(text)
    with pytest.raises(usage_plans.UsagePlanError, match=complaint):
        usage_plans.load(path)
