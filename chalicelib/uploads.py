"""Presigned uploads (`POST /uploads`): where a client puts the input of a job.

An upload is a POST policy for one new key under the caller's prefix, `inputs/<owner>/<ULID>-<name>`
of the service's input bucket (the first of INPUT_BUCKETS), so no client can write where another
reads. S3 itself enforces the policy: the exact key, the size range (`content-length-range`), the
content type when one was named, and the expiry. The API signs it and makes no request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from . import errors
from .config import Settings
from .models import utcnow
from .objects import ObjectStore, input_prefix
from .observability import logger as log

FIELDS = {"filename", "contentType", "bytes"}
MAX_FILENAME_CHARS = 255
#: Characters kept of a file's name in its key; any run of others becomes `_`.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEPT_NAME_CHARS = 100
#: `type/subtype` with optional parameters, as RFC 9110 spells a media type (tokens only).
CONTENT_TYPE_PATTERN = r"^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}(; ?[A-Za-z0-9_.-]+=[A-Za-z0-9_.-]+)*$"
_CONTENT_TYPE = re.compile(CONTENT_TYPE_PATTERN)


@dataclass(frozen=True)
class Upload:
    """Where and how to upload: a form POST of `fields` and then the file (`file` last) to `url`."""

    bucket: str
    key: str
    url: str
    fields: dict[str, str]
    expires_at: datetime
    max_bytes: int


class Uploads:
    """Signs uploads for owners; the bucket is the service's input bucket."""

    def __init__(self, objects: ObjectStore, settings: Settings):
        self._objects = objects
        self._settings = settings

    def create(self, owner: str, body: Any) -> Upload:
        """A presigned upload of one file under the owner's prefix."""
        filename, content_type, size = _parse(body, max_bytes=self._settings.upload_max_bytes)
        bucket = self._bucket()
        from ulid import ULID  # as models.new_job_id: only the routes that create things pay for it

        key = input_prefix(owner) + str(ULID()) + ("" if filename is None else f"-{safe_name(filename)}")
        expires = self._settings.upload_expires_seconds
        low, high = (0, self._settings.upload_max_bytes) if size is None else (size, size)
        signed = self._objects.presigned_post(
            bucket, key, min_bytes=low, max_bytes=high, content_type=content_type, expires_seconds=expires
        )
        log.info("upload signed", extra={"key": key, "max_bytes": high})
        return Upload(bucket, key, signed["url"], signed["fields"], utcnow() + timedelta(seconds=expires), high)

    @cached_property
    def origin(self) -> str | None:
        """The origin uploads go to (`scheme://host[:port]`), for the dashboard's connect-src; None
        when this deployment cannot sign uploads."""
        try:
            signed = self._objects.presigned_post(
                self._bucket(), "inputs/", min_bytes=0, max_bytes=0, content_type=None, expires_seconds=60
            )
        except (errors.Misconfigured, errors.ObjectStoreUnavailable):
            return None
        parts = urlsplit(signed["url"])
        return f"{parts.scheme}://{parts.netloc}"

    def _bucket(self) -> str:
        if not self._settings.input_buckets:
            raise errors.Misconfigured("this deployment has no input bucket for uploads (INPUT_BUCKETS)")
        return self._settings.input_buckets[0]


def _parse(body: Any, *, max_bytes: int) -> tuple[str | None, str | None, int | None]:
    if not isinstance(body, dict):
        raise errors.InvalidJson("the body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise errors.InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    nulls = sorted(name for name, value in body.items() if value is None)
    if nulls:
        raise errors.InvalidRequest(f"leave out a field rather than send null: {', '.join(nulls)}")
    filename, content_type, size = body.get("filename"), body.get("contentType"), body.get("bytes")
    if filename is not None:
        if not isinstance(filename, str) or not 1 <= len(filename) <= MAX_FILENAME_CHARS:
            raise errors.InvalidRequest(f"filename must be a string of 1 to {MAX_FILENAME_CHARS} characters")
        if "/" in filename or "\\" in filename or filename in (".", ".."):
            raise errors.InvalidRequest("filename must be a file's name, without a path (no / or \\)")
        if any(ord(c) < 32 or ord(c) == 127 for c in filename):
            raise errors.InvalidRequest("filename must not contain control characters")
    if content_type is not None and (not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type)):
        raise errors.InvalidRequest("contentType must be a media type such as text/csv")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= max_bytes):
        raise errors.InvalidRequest(f"bytes must be an integer from 0 to {max_bytes} (UPLOAD_MAX_BYTES)")
    return filename, content_type, size


def safe_name(filename: str) -> str:
    """The file's name as the tail of a key: letters, digits, `.`, `_`, `-`; at most 100 characters,
    the extension kept."""
    name = _UNSAFE.sub("_", filename)
    if len(name) <= _KEPT_NAME_CHARS:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) < 20:
        return stem[: _KEPT_NAME_CHARS - len(extension) - 1] + "." + extension
    return name[:_KEPT_NAME_CHARS]
