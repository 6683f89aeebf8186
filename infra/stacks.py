"""Create, update, read and delete the CloudFormation stacks of infra/ (plain boto3, any endpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Data stacks take 15-30 minutes on AWS (RDS, ElastiCache); emulators answer at once.
_WAIT = {"Delay": 5, "MaxAttempts": 720}


def deploy(cfn: Any, name: str, template: Path, parameters: dict[str, str]) -> dict[str, str]:
    """Create the stack or update it to `template`; returns its outputs once it is complete."""
    args = dict(
        StackName=name,
        TemplateBody=template.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
    )
    status = _status(cfn, name)
    if status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed can only be deleted, never updated.
        delete(cfn, name)
        status = None
    if status is None:
        cfn.create_stack(**args)
        cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=_WAIT)
    else:
        try:
            cfn.update_stack(**args)
        except cfn.exceptions.ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
        else:
            cfn.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig=_WAIT)
    return outputs(cfn, name)


def outputs(cfn: Any, name: str) -> dict[str, str]:
    """The stack's outputs by key ({} when there is no such stack)."""
    if _status(cfn, name) is None:
        return {}
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def delete(cfn: Any, name: str) -> bool:
    """Delete the stack if it exists and wait until it is gone; says whether there was one."""
    if _status(cfn, name) is None:
        return False
    cfn.delete_stack(StackName=name)
    cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig=_WAIT)
    return True


def _status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    status = stacks[0]["StackStatus"] if stacks else None
    return None if status in (None, "DELETE_COMPLETE") else status
