"""The Chalice stage as deployed: .chalice/config.json's hand-written settings plus the stacks' outputs.

Humans write timeouts, memory, concurrency and batching in .chalice/config.json; the stacks decide
addresses, subnets, security groups and roles. `render` joins the two into the config that
`chalice deploy` reads (in the build copy made by infra/deploy.py, never in the committed file).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

#: Stack output -> environment variable of the functions (the table in README.md's Configuration).
OUTPUT_ENV = {
    "MysqlUrl": "MYSQL_URL",
    "MysqlSecretArn": "MYSQL_SECRET_ARN",
    "MysqlTls": "MYSQL_TLS",
    "RedisUrl": "REDIS_URL",
    "RedisAuthSecretArn": "REDIS_AUTH_SECRET_ARN",
    "JobsQueueUrl": "JOBS_QUEUE_URL",
    "JobsQueueName": "JOBS_QUEUE_NAME",
    "DeadLetterQueueName": "JOBS_DLQ_NAME",
    "HighJobsQueueUrl": "JOBS_HIGH_QUEUE_URL",
    "HighJobsQueueName": "JOBS_HIGH_QUEUE_NAME",
    "HighDeadLetterQueueName": "JOBS_HIGH_DLQ_NAME",
    "InputBucketName": "INPUT_BUCKETS",
    "ResultsBucketName": "RESULTS_BUCKET",
    "WorkBucketName": "WORK_BUCKET",
    "TenantsUrl": "TENANTS_URL",
    "WebhooksQueueUrl": "WEBHOOKS_QUEUE_URL",
    "WebhooksQueueName": "WEBHOOKS_QUEUE_NAME",
    "WebhookSecretPrefix": "WEBHOOK_SECRET_PREFIX",
}

API_FUNCTION = "api_handler"
WORKER_FUNCTION = "run_jobs"
DEAD_LETTER_FUNCTION = "fail_dead_letters"
#: The high-priority queue's worker and dead-letter handler (app.run_high_jobs, app.fail_high_dead_letters):
#: the same code and roles as the normal ones, their own mappings and reserved concurrency.
HIGH_WORKER_FUNCTION = "run_high_jobs"
HIGH_DEAD_LETTER_FUNCTION = "fail_high_dead_letters"
SWEEP_FUNCTION = "sweep"
#: Applies the schema's migrations from inside the VPC; infra/deploy.py invokes it.
MIGRATE_FUNCTION = "migrate"
#: Delivers completion webhooks from the webhooks queue (app.deliver_webhooks).
DELIVERY_FUNCTION = "deliver_webhooks"
#: Function -> the stack output holding its role (infra/service.yaml: one role per function).
ROLE_OUTPUTS = {
    API_FUNCTION: "ApiFunctionRoleArn",
    WORKER_FUNCTION: "WorkerFunctionRoleArn",
    DEAD_LETTER_FUNCTION: "DeadLetterFunctionRoleArn",
    HIGH_WORKER_FUNCTION: "WorkerFunctionRoleArn",
    HIGH_DEAD_LETTER_FUNCTION: "DeadLetterFunctionRoleArn",
    SWEEP_FUNCTION: "SweeperFunctionRoleArn",
    MIGRATE_FUNCTION: "MigrateFunctionRoleArn",
    DELIVERY_FUNCTION: "DeliveryFunctionRoleArn",
}
#: Keys of lambda_functions.run_jobs that Chalice ignores and infra/deploy.py applies to the mapping.
BATCH_SIZE_KEY = "sqs_batch_size"
BATCH_WINDOW_KEY = "sqs_maximum_batching_window_in_seconds"
#: AWS: "set the source queue's visibility timeout to at least six times the function's timeout".
VISIBILITY_TIMEOUT_FACTOR = 6


@dataclass(frozen=True)
class WorkerSettings:
    """What the deploy needs to know about the worker function before and after Chalice runs."""

    timeout_seconds: int
    batch_size: int
    batching_window_seconds: int

    @property
    def queue_visibility_timeout(self) -> int:
        return VISIBILITY_TIMEOUT_FACTOR * self.timeout_seconds


def function_names(app_name: str, stage: str) -> dict[str, str]:
    """Chalice's Lambda names: `<app>-<stage>` for the API handler, `<app>-<stage>-<fn>` otherwise."""
    return {
        function: f"{app_name}-{stage}" if function == API_FUNCTION else f"{app_name}-{stage}-{function}"
        for function in ROLE_OUTPUTS
    }


def stage_of(config: dict, stage: str) -> dict:
    """The stage's section of .chalice/config.json, or a clear error."""
    try:
        return config["stages"][stage]
    except KeyError:
        known = ", ".join(config["stages"])
        raise SystemExit(f"stage {stage!r} is not in .chalice/config.json (has: {known})") from None


def worker_settings(config: dict, stage: str, function: str = WORKER_FUNCTION) -> WorkerSettings:
    """Timeout and batching of a worker function (the normal or the high-priority one) in `stage`,
    with Chalice's fallbacks (function, stage, top)."""
    worker = stage_of(config, stage).get("lambda_functions", {}).get(function, {})
    return WorkerSettings(
        timeout_seconds=function_timeout(config, stage, function),
        batch_size=int(worker.get(BATCH_SIZE_KEY, 10)),
        batching_window_seconds=int(worker.get(BATCH_WINDOW_KEY, 0)),
    )


def function_timeout(config: dict, stage: str, function: str) -> int:
    """A function's `lambda_timeout` as Chalice resolves it: function, then stage, then top level (60)."""
    section = stage_of(config, stage)
    own = section.get("lambda_functions", {}).get(function, {})
    return int(own.get("lambda_timeout", section.get("lambda_timeout", config.get("lambda_timeout", 60))))


def dead_letter_visibility_timeout(config: dict, stage: str) -> int:
    """The dead-letter queue's visibility timeout: six times its handler's timeout, as for the jobs queue."""
    return VISIBILITY_TIMEOUT_FACTOR * function_timeout(config, stage, DEAD_LETTER_FUNCTION)


def webhooks_visibility_timeout(config: dict, stage: str) -> int:
    """The webhooks queue's visibility timeout: six times the delivery function's timeout."""
    return VISIBILITY_TIMEOUT_FACTOR * function_timeout(config, stage, DELIVERY_FUNCTION)


def render(config: dict, stage: str, outputs: dict[str, str], *, extra_env: dict[str, str] | None = None) -> dict:
    """A copy of `config` whose `stage` carries the stacks' environment, VPC and roles."""
    rendered = copy.deepcopy(config)
    section = stage_of(rendered, stage)
    env = section.setdefault("environment_variables", {})
    env.update({var: outputs[key] for key, var in OUTPUT_ENV.items() if key in outputs})
    env.update(extra_env or {})
    if "SubnetIds" in outputs:
        section["subnet_ids"] = outputs["SubnetIds"].split(",")
        section["security_group_ids"] = [outputs["FunctionSecurityGroupId"]]
    # The roles come from infra/service.yaml, scoped to this stage's queue and secrets.
    section["manage_iam_role"] = False
    section["iam_role_arn"] = outputs["ApiFunctionRoleArn"]
    functions = section.setdefault("lambda_functions", {})
    for function, output in ROLE_OUTPUTS.items():
        functions.setdefault(function, {})["iam_role_arn"] = outputs[output]
    if "DeliverySubnetIds" in outputs:
        # The one function with a route out of the VPC (webhooks reach clients' receivers).
        functions[DELIVERY_FUNCTION]["subnet_ids"] = outputs["DeliverySubnetIds"].split(",")
        functions[DELIVERY_FUNCTION]["security_group_ids"] = [outputs["DeliverySecurityGroupId"]]
    return rendered
