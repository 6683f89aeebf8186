"""S3 with boto3: the only module that speaks to object storage. Job types read their inputs through it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import aws, errors

#: The error codes S3 answers for a bucket or key that is not there (HeadObject has no body: a bare 404).
MISSING = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})


def connect(*, endpoint_url: str | None, region: str) -> Any:
    """An S3 client; `endpoint_url` points it at LocalStack or moto, None at AWS."""
    return aws.client("s3", endpoint_url=endpoint_url, region=region)


class ObjectStore:
    """Objects in S3, read whole or by byte range. Its client is made on first use, like JobQueue's."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._client: Any = None

    @property
    def _s3(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def size(self, bucket: str, key: str) -> int:
        """The object's length in bytes (HeadObject)."""
        return self._call(bucket, key, lambda s3: s3.head_object(Bucket=bucket, Key=key)["ContentLength"])

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` of the object, both inclusive (GetObject with a Range header)."""
        # The body is read inside the call: a connection that breaks mid-stream is S3 not answering too.
        return self._call(bucket, key, lambda s3: s3.get_object(
            Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read())

    def _call(self, bucket: str, key: str, request: Callable[[Any], Any]) -> Any:
        """Run one request, turning botocore's errors into ours."""
        try:
            return request(self._s3)
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code in MISSING:
                raise errors.ObjectNotFound(f"s3://{bucket}/{key} does not exist ({code})") from exc
            raise errors.ObjectStoreUnavailable(f"S3: cannot read s3://{bucket}/{key}: {exc}") from exc
