"""S3 with boto3: the only module that speaks to object storage.

Job types never see it directly: each job gets a `JobObjects`, the store scoped to what that job
may touch (its inputs; its own objects under `jobs/<owner>/<job id>/` of the work bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import aws, errors

#: The error codes S3 answers for a bucket or key that is not there (HeadObject has no body: a bare 404).
MISSING = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})


def connect(*, endpoint_url: str | None, region: str) -> Any:
    """An S3 client; `endpoint_url` points it at LocalStack or moto, None at AWS."""
    # botocore 1.44 still presigns S3 URLs with SigV2 by default, and for a bucket outside
    # us-east-1 with the global endpoint; SigV4 and virtual-host addressing give URLs S3 accepts in
    # every region (an IP endpoint such as moto's stays path-style by itself).
    return aws.client(
        "s3", endpoint_url=endpoint_url, region=region, signature_version="s3v4", s3={"addressing_style": "virtual"}
    )


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
        return self._call(
            bucket, key, lambda s3: s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
        )

    def put(self, bucket: str, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store `data` as s3://bucket/key (PutObject)."""
        extra = {"ContentType": content_type} if content_type else {}
        self._call(bucket, key, lambda s3: s3.put_object(Bucket=bucket, Key=key, Body=data, **extra), verb="write")

    def presign_get(self, bucket: str, key: str, *, expires_seconds: int) -> str:
        """A URL that GETs s3://bucket/key for `expires_seconds`, signed here without a request.

        It works while the signer's credentials do: a role's temporary ones (Lambda's) end the URL
        with their session, whatever `expires_seconds` says.
        """
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_seconds
        )

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        """Delete these keys of `bucket` (DeleteObjects, 1000 a request); missing keys are no error."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]

            def request(s3: Any, batch: list[dict[str, str]] = batch) -> Any:
                return s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

            reply = self._call(bucket, batch[0]["Key"], request, verb="delete")
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise errors.ObjectStoreUnavailable(
                    f"S3: {len(reply['Errors'])} objects of s3://{bucket} not deleted ({first.get('Code')})"
                )

    def get(self, bucket: str, key: str) -> bytes:
        """The whole object (GetObject)."""
        return self._call(bucket, key, lambda s3: s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def scoped(
        self, *, owner: str, job_id: str | None, input_buckets: tuple[str, ...], work_bucket: str | None
    ) -> JobObjects:
        """This store as one job may use it."""
        return JobObjects(self, owner=owner, job_id=job_id, input_buckets=input_buckets, work_bucket=work_bucket)

    def _call(self, bucket: str, key: str, request: Callable[[Any], Any], *, verb: str = "read") -> Any:
        """Run one request, turning botocore's errors into ours."""
        try:
            return request(self._s3)
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code in MISSING:
                raise errors.ObjectNotFound(f"s3://{bucket}/{key} does not exist ({code})") from exc
            raise errors.ObjectStoreUnavailable(f"S3: cannot {verb} s3://{bucket}/{key}: {exc}") from exc


class JobObjects:
    """The `objects` of a job's context: reads of allowed inputs, and objects of the job's own.

    Inputs come from the service's input buckets (INPUT_BUCKETS; empty: any bucket, for local use).
    A job's own objects live under `jobs/<owner>/<job id>/` of WORK_BUCKET, so no name a job type
    chooses can reach another job's objects.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        owner: str,
        job_id: str | None,
        input_buckets: tuple[str, ...],
        work_bucket: str | None,
    ):
        self._store = store
        self._owner = owner
        self._job_id = job_id
        self._input_buckets = input_buckets
        self._work_bucket = work_bucket

    def check_input(self, bucket: str, key: str) -> None:
        """errors.InvalidPayload unless the job may read s3://bucket/key; no request is made."""
        if self._input_buckets and bucket not in self._input_buckets:
            # The worker's role reads only these buckets: any other would fail the job at its first chunk.
            raise errors.InvalidPayload(
                f"payload.bucket {bucket!r} is not an input bucket of this service; "
                f"allowed: {', '.join(self._input_buckets)}"
            )

    def size(self, bucket: str, key: str) -> int:
        self._readable(bucket, key)
        return self._store.size(bucket, key)

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        self._readable(bucket, key)
        return self._store.read_range(bucket, key, start, end)

    def put(self, name: str, data: bytes) -> str:
        bucket, key = self._own(name)
        self._store.put(bucket, key, data)
        return f"s3://{bucket}/{key}"

    def get(self, name: str) -> bytes:
        return self._store.get(*self._own(name))

    def _readable(self, bucket: str, key: str) -> None:
        try:
            self.check_input(bucket, key)
        except errors.InvalidPayload as exc:
            raise errors.PermanentFailure(exc.message) from None

    def _own(self, name: str) -> tuple[str, str]:
        if self._job_id is None:
            raise errors.PermanentFailure("objects of a job's own can only be used once the job runs")
        if self._work_bucket is None:
            raise errors.PermanentFailure("this deployment has no WORK_BUCKET for objects of a job's own")
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise errors.PermanentFailure(f"object name {name[:100]!r} must be a relative path without '..'")
        return self._work_bucket, f"jobs/{self._owner}/{self._job_id}/{name}"
