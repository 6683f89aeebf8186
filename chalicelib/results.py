"""Where a job's result lives: inline in its row (and Redis), or as an object in RESULTS_BUCKET.

A result is measured once, as the JSON the row would hold. Up to INLINE_RESULT_BYTES it is inline:
`GET /jobs/{id}` shows it. Larger, it is written to `results/<owner>/<job id>.json` BEFORE the
final UPDATE (a crash in between leaves an orphan object, never a COMPLETED job without its
result); the row keeps the key and the size, and readers get a presigned URL made at read time, so
no large body ever passes through Lambda (6 MB response limit). Over RESULT_MAX_BYTES the job
fails (ResultTooLarge). Without RESULTS_BUCKET, large results stay in the row, up to MySQL's
max_allowed_packet (store.py names a larger one for what it is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import Settings
from .models import result_key
from .objects import ObjectStore


@dataclass(frozen=True)
class StoredResult:
    """A result as the final UPDATE writes it: its JSON when inline, else the key of its object."""

    size: int
    #: The JSON of an inline result; None when it is in RESULTS_BUCKET.
    text: str | None
    key: str | None = None


class Results:
    """Stores results by size, and signs the URLs readers fetch large ones from."""

    def __init__(self, objects: ObjectStore, settings: Settings):
        self._objects = objects
        self._settings = settings

    def store(self, owner: str, job_id: str, result: Any) -> StoredResult:
        """Measure `result` and, when it is too large to be inline, write its object.

        Raises ResultTooLarge over RESULT_MAX_BYTES, ObjectStoreUnavailable if S3 does not answer.
        """
        s = self._settings
        text = json.dumps(result, separators=(",", ":"))
        size = len(text)  # bytes too: json.dumps escapes every non-ASCII character
        if size > s.result_max_bytes:
            raise errors.ResultTooLarge(f"result is {size} bytes, over the ceiling of {s.result_max_bytes}")
        if size <= s.inline_result_bytes or s.results_bucket is None:
            return StoredResult(size, text)
        key = result_key(owner, job_id)
        self._objects.put(s.results_bucket, key, text.encode(), content_type="application/json")
        return StoredResult(size, None, key)

    def read(self, key: str) -> Any:
        """The result kept in the object `key` (one GetObject)."""
        return json.loads(self._objects.get(self._bucket(), key))

    def url(self, key: str) -> str:
        """A fresh presigned GET of the result object, valid RESULT_URL_SECONDS."""
        bucket = self._bucket()
        return self._objects.presign_get(bucket, key, expires_seconds=self._settings.result_url_seconds)

    def delete(self, keys: list[str]) -> None:
        """Delete these result objects (purged jobs'); a missing one is no error."""
        if keys:
            self._objects.delete_many(self._bucket(), keys)

    def _bucket(self) -> str:
        if self._settings.results_bucket is None:
            raise errors.Misconfigured("results are kept in S3 but RESULTS_BUCKET is not set")
        return self._settings.results_bucket
