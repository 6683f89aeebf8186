"""boto3 clients for the AWS services the functions call (SQS, S3, Secrets Manager).

boto3 costs ~110 ms of imports, so it is imported on first use: a route that calls no AWS service
never pays for it. `endpoint_url` points a client at LocalStack or moto; None means AWS itself.
"""

from __future__ import annotations

from typing import Any


def client(service: str, *, endpoint_url: str | None, region: str, **options: Any) -> Any:
    """A client with short timeouts and boto3's standard retry mode (3 attempts); `options` are
    more botocore Config settings (e.g. S3's signature_version)."""
    import boto3
    from botocore.config import Config

    # SigV4 for S3's presigned uploads too (botocore may otherwise sign a POST policy with SigV2,
    # which regions opened since 2014 refuse).
    extra = {"signature_version": "s3v4"} if service == "s3" else {}
    config = Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}, **{**extra, **options}
    )
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)
