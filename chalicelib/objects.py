"""S3 with boto3: the only module that speaks to object storage.

Job types never see it directly: each job gets a `JobObjects`, the store scoped to what that job
may touch (its owner's inputs under `inputs/<owner>/`; its own objects under `jobs/<owner>/<job id>/`
of the work bucket).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import aws, errors

#: The error codes S3 answers for a bucket or key that is not there (HeadObject has no body: a bare 404).
MISSING = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
#: ... for a read the worker's role may not make (HeadObject: a bare 403).
DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden", "403"})
#: ... for a byte range past the object's end: the object shrank since its size was read.
BEYOND_END = frozenset({"InvalidRange", "416"})
#: Where an owner's inputs live in an input bucket: `inputs/<owner>/` (see `owner_segment`).
INPUTS_PREFIX = "inputs/"
_SAFE_OWNER_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def owner_segment(owner: str) -> str:
    """The owner as one segment of an object key: letters, digits, `_` and `-` as they are (API
    Gateway's key ids, local client names), every other byte of its UTF-8 as `%XX`.

    The owner is whatever `http.owner` allows (printable ASCII but space, up to 128 characters), so
    it may hold `/`: unencoded, owner `a` would see `inputs/a/b/...`, the inputs of owner `a/b`.
    `%` is always encoded, so two owners never share a segment.
    """
    return _SAFE_OWNER_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), owner)


def input_prefix(owner: str) -> str:
    """The key prefix of the owner's inputs: the only keys its jobs may read."""
    return f"{INPUTS_PREFIX}{owner_segment(owner)}/"


def input_not_found(bucket: str, key: str) -> str:
    """The one message for an input a job may not read, whether it is missing or another owner's."""
    return f"input object not found: s3://{bucket}/{key}"


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
        self._call(
            bucket,
            key,
            lambda s3: s3.put_object(Bucket=bucket, Key=key, Body=data, **extra),
            verb="write",
            noun="object",
        )

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

            reply = self._call(bucket, batch[0]["Key"], request, verb="delete", noun="objects")
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise errors.ObjectStoreUnavailable(
                    f"S3: {len(reply['Errors'])} objects of s3://{bucket} not deleted ({first.get('Code')})"
                )

    def get(self, bucket: str, key: str) -> bytes:
        """The whole object (GetObject)."""
        return self._call(bucket, key, lambda s3: s3.get_object(Bucket=bucket, Key=key)["Body"].read(), noun="object")

    def presigned_post(
        self, bucket: str, key: str, *, min_bytes: int, max_bytes: int, content_type: str | None, expires_seconds: int
    ) -> dict[str, Any]:
        """A POST policy for exactly this key and a body of `min_bytes` to `max_bytes` (S3 refuses
        others: EntityTooSmall / EntityTooLarge); `{"url", "fields"}`. Signed here, no request made."""
        fields = {} if content_type is None else {"Content-Type": content_type}
        conditions: list[Any] = [["content-length-range", min_bytes, max_bytes], *({k: v} for k, v in fields.items())]
        try:
            return self._s3.generate_presigned_post(
                Bucket=bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires_seconds
            )
        except Exception as exc:  # botocore's NoCredentialsError and kin: nothing to sign with
            raise errors.ObjectStoreUnavailable(f"S3: cannot sign an upload to s3://{bucket}: {exc}") from exc

    def scoped(
        self, *, owner: str, job_id: str | None, input_buckets: tuple[str, ...], work_bucket: str | None
    ) -> JobObjects:
        """This store as one job may use it."""
        return JobObjects(self, owner=owner, job_id=job_id, input_buckets=input_buckets, work_bucket=work_bucket)

    def _call(
        self, bucket: str, key: str, request: Callable[[Any], Any], *, verb: str = "read", noun: str = "input object"
    ) -> Any:
        """Run one request, turning botocore's errors into ours (`verb` and `noun` name what it does)."""
        try:
            return request(self._s3)
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code in MISSING:
                raise errors.ObjectNotFound(f"s3://{bucket}/{key} does not exist ({code})") from exc
            if code in DENIED:
                # S3's text names the role's ARN and the account: the client reads only the object's name.
                raise errors.ObjectAccessDenied(f"cannot {verb} {noun} s3://{bucket}/{key}") from exc
            if code in BEYOND_END:
                raise errors.ObjectChanged(f"s3://{bucket}/{key} changed while the job read it") from exc
            raise errors.ObjectStoreUnavailable(f"S3: cannot {verb} s3://{bucket}/{key}: {exc}") from exc


class JobObjects:
    """The `objects` of a job's context: reads of allowed inputs, and objects of the job's own.

    Inputs come from the service's input buckets (INPUT_BUCKETS; empty: any bucket, for local use),
    under the owner's prefix `inputs/<owner>/` only. A key outside it answers exactly as a missing
    one: at submit the same `InvalidPayload`, in the worker the same `ObjectNotFound`, with the same
    message; and no request is made for it, so S3's answer cannot tell whether it exists.
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
        """Whether the job may read s3://bucket/key: at submit (no job id yet) errors.InvalidPayload
        unless it is the owner's and exists (one HeadObject); in the worker no request is made
        (its reads find a missing object) and another owner's key is errors.ObjectNotFound."""
        if self._input_buckets and bucket not in self._input_buckets:
            # The worker's role reads only these buckets: any other would fail the job at its first chunk.
            raise errors.InvalidPayload(
                f"payload.bucket {bucket!r} is not an input bucket of this service; "
                f"allowed: {', '.join(self._input_buckets)}"
            )
        at_submit = self._job_id is None
        if not self._owns(key):
            raise (errors.InvalidPayload if at_submit else errors.ObjectNotFound)(input_not_found(bucket, key))
        if at_submit:
            try:
                self._store.size(bucket, key)
            except errors.ObjectNotFound:
                raise errors.InvalidPayload(input_not_found(bucket, key)) from None

    def size(self, bucket: str, key: str) -> int:
        self._readable(bucket, key)
        return self._input(bucket, key, lambda: self._store.size(bucket, key))

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        self._readable(bucket, key)
        return self._input(bucket, key, lambda: self._store.read_range(bucket, key, start, end))

    def put(self, name: str, data: bytes) -> str:
        bucket, key = self._own(name)
        self._store.put(bucket, key, data)
        return f"s3://{bucket}/{key}"

    def get(self, name: str) -> bytes:
        return self._store.get(*self._own(name))

    def _owns(self, key: str) -> bool:
        """Whether the key is under the owner's prefix, with no `.` or `..` segment a URL could fold away."""
        prefix = input_prefix(self._owner)
        return key.startswith(prefix) and not {".", ".."} & set(key[len(prefix) :].split("/"))

    def _readable(self, bucket: str, key: str) -> None:
        """The rules of check_input, without a request: a job reads only what it could be submitted with."""
        if self._input_buckets and bucket not in self._input_buckets:
            raise errors.PermanentFailure(
                f"payload.bucket {bucket!r} is not an input bucket of this service; "
                f"allowed: {', '.join(self._input_buckets)}"
            )
        if not self._owns(key):
            raise errors.ObjectNotFound(input_not_found(bucket, key))

    @staticmethod
    def _input(bucket: str, key: str, read: Callable[[], Any]) -> Any:
        """A read of an input; missing, it fails with the message another owner's key gets."""
        try:
            return read()
        except errors.ObjectNotFound:
            raise errors.ObjectNotFound(input_not_found(bucket, key)) from None

    def _own(self, name: str) -> tuple[str, str]:
        if self._job_id is None:
            raise errors.PermanentFailure("objects of a job's own can only be used once the job runs")
        if self._work_bucket is None:
            raise errors.PermanentFailure("this deployment has no WORK_BUCKET for objects of a job's own")
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise errors.PermanentFailure(f"object name {name[:100]!r} must be a relative path without '..'")
        return self._work_bucket, f"jobs/{self._owner}/{self._job_id}/{name}"
