"""The clients' webhook signing secrets in Secrets Manager: one per client, made by the deploy.

The names are chalicelib.webhooks.signing's (`<WEBHOOK_SECRET_PREFIX><client>`), the value
`whsec_<base64>`; an existing secret is kept (deploys never change a client's secret). Rotating
one: `python -m infra.webhook_secrets rotate --prefix jobs-dev/webhook-secret/ --client demo`
(deliveries are signed with the old secret too for 24 hours after).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from chalicelib.webhooks.signing import SigningSecrets, secret_name


def ensure(sm: Any, prefix: str, clients: list[str]) -> dict[str, str]:
    """Make each client's secret where it has none; client -> secret name (never the value)."""
    secrets = SigningSecrets(lambda: sm, prefix)
    for client in clients:
        secrets.ensure(client)
    return {client: secret_name(prefix, client) for client in clients}


def delete_all(sm: Any, prefix: str) -> int:
    """Delete every secret under the prefix (a teardown), at once; returns how many."""
    names = [
        secret["Name"]
        for page in sm.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [prefix]}])
        for secret in page["SecretList"]
        if secret["Name"].startswith(prefix)
    ]
    for name in names:
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    return len(names)


def main(argv: list[str] | None = None) -> None:
    import boto3

    parser = argparse.ArgumentParser(description="rotate a client's webhook signing secret")
    parser.add_argument("action", choices=["rotate"])
    parser.add_argument(
        "--prefix", required=True, help="the stage's WEBHOOK_SECRET_PREFIX (jobs-<stage>/webhook-secret/)"
    )
    parser.add_argument("--client", required=True)
    ns = parser.parse_args(argv)
    SigningSecrets(lambda: boto3.client("secretsmanager"), ns.prefix).rotate(ns.client)
    print(json.dumps({"client": ns.client, "secret": secret_name(ns.prefix, ns.client), "rotated": True}))


if __name__ == "__main__":
    main()
