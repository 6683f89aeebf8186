"""Secrets Manager: the only module that reads secrets. Values are cached per container, never logged.

The functions read secrets on first use (a cold start of a function that needs them), not at import.
"""

from __future__ import annotations

import json
from functools import lru_cache

from . import aws, errors


@lru_cache(maxsize=16)
def read(arn: str, *, endpoint_url: str | None, region: str) -> str:
    """The SecretString of a secret."""
    client = aws.client("secretsmanager", endpoint_url=endpoint_url, region=region)
    try:
        return client.get_secret_value(SecretId=arn)["SecretString"]
    except Exception as exc:  # the message names the secret, never its value
        raise errors.DependencyUnavailable(f"Secrets Manager: cannot read {arn}: {type(exc).__name__}") from exc


def mysql_credentials(arn: str, *, endpoint_url: str | None, region: str) -> tuple[str, str]:
    """(username, password) from an RDS-style secret: JSON with `username` and `password`."""
    secret = json.loads(read(arn, endpoint_url=endpoint_url, region=region))
    return secret["username"], secret["password"]
