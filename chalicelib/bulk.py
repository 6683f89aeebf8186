"""Bulk cancel (`POST /jobs/cancel`): the caller's unfinished jobs that match a filter, at most
`limit` per call, with what DELETE /jobs/{id} does to each, in bulk statements.

A filter names `status` (an unfinished one), `type`, `batchId`, or several: an empty filter is a 400, so a
mistyped request (or a body lost on the way) never cancels everything. The matching jobs are read
once (newest first, the owner's index); the unstarted ones end in one multi-row guarded UPDATE
(Lifecycle.cancel_unstarted: final views in one pipeline, webhooks, held jobs released), the
RUNNING ones get their cancel flag in one UPDATE and one pipeline and stop at their next chunk
boundary. A job that moved on between the read and the UPDATE (started, ended) is not counted;
one that started is flagged with the RUNNING ones. RUNNING jobs already flagged do not match, so
calling again goes on where the last call stopped; `nextCursor` (the last id read, when more
matched than the bound) makes that explicit and keeps a page whose jobs all moved on from being
read again.

Cost of a call, whatever the number of jobs: one SELECT, one UPDATE for the unstarted ones and one
for the running ones (each followed by a SELECT only when a job moved on meanwhile), two Redis
round trips per pipeline; a webhook is one SQS send per job with a callback and one UPDATE for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors
from .hotstate import HotState
from .jobs import JobTypes
from .lifecycle import Lifecycle
from .models import JobStatus, parse_job_id, utcnow
from .observability import logger as log
from .store import JobStore

#: Most jobs one call cancels (or flags): the statements' IN lists stay far below max_allowed_packet.
MAX_BULK_CANCEL = 1000
_FIELDS = {"status", "type", "batchId", "cursor"}
#: What a filter's `status` may name: the unfinished states.
CANCELLABLE = tuple(status for status in JobStatus if not status.terminal)


@dataclass(frozen=True)
class Filter:
    """Which of the caller's jobs a bulk cancel takes: in one of `statuses`, of `type`, of the batch
    `batch_id`, before `cursor`."""

    statuses: tuple[JobStatus, ...]
    type: str | None = None
    cursor: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class Cancelled:
    """What a bulk cancel did: how many jobs it cancelled or flagged, and where the next call starts."""

    cancelled: int
    next_cursor: str | None


def parse_filter(body: Any, job_types: JobTypes, *, decode_cursor) -> Filter:
    """The filter of a `POST /jobs/cancel` body; InvalidRequest for anything else, an empty one included."""
    if not isinstance(body, dict):
        raise errors.InvalidJson("the body must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise errors.InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
    if not {"status", "type", "batchId"} & set(body):
        raise errors.InvalidRequest("give status, type, batchId or several: an empty filter would cancel every job")
    statuses = CANCELLABLE
    if "status" in body:
        names = [status.value for status in CANCELLABLE]
        if body["status"] not in names:
            raise errors.InvalidRequest(f"status must be one of {', '.join(names)}")
        statuses = (JobStatus(body["status"]),)
    job_type = body.get("type")
    if "type" in body:
        if not isinstance(job_type, str):
            raise errors.InvalidRequest("type must be a string")
        job_types.get(job_type)  # UnknownJobType: a 400 naming it
    cursor = body.get("cursor")
    if "cursor" in body and not isinstance(cursor, str):
        raise errors.InvalidRequest("cursor is not one this API returned")
    batch_id = None
    if "batchId" in body:
        try:
            batch_id = parse_job_id(body["batchId"] if isinstance(body["batchId"], str) else "")
        except errors.InvalidJobId:
            raise errors.InvalidRequest("batchId is not a batch id") from None
    return Filter(statuses, job_type, None if cursor is None else decode_cursor(cursor), batch_id)


class BulkCancel:
    """Cancels an owner's jobs by filter, `limit` at most per call."""

    def __init__(self, store: JobStore, hot: HotState, lifecycle: Lifecycle, *, limit: int = MAX_BULK_CANCEL):
        self._store = store
        self._hot = hot
        self._lifecycle = lifecycle
        self.limit = limit

    def cancel(self, owner: str, wanted: Filter) -> Cancelled:
        """Cancel the unstarted jobs of `wanted` and flag the running ones; how many, and the cursor."""
        found = self._store.cancellable(
            owner,
            statuses=wanted.statuses,
            type=wanted.type,
            batch_id=wanted.batch_id,
            limit=self.limit + 1,
            before_id=wanted.cursor,
        )
        page, more = found[: self.limit], len(found) > self.limit
        unstarted = [job for job in page if job.status.unstarted]
        ended = self._lifecycle.cancel_unstarted(unstarted, owner=owner, message="cancelled before it started")
        done = {job.id for job in ended}
        # Those that started between the read and the UPDATE are flagged with the running ones.
        running = [job.id for job in page if job.id not in done]
        flagged = self._store.request_cancel_many(running, owner=owner, at=utcnow()) if running else []
        try:
            self._hot.request_cancel_many(flagged)
        except errors.HotStateUnavailable:
            # MySQL holds the flags: a worker that cannot reach Redis reads them when its record comes back.
            log.warning("bulk cancel: %d cancel flags recorded in MySQL only", len(flagged), exc_info=True)
        log.info("bulk cancel", extra={"owner": owner, "cancelled": len(ended), "flagged": len(flagged)})
        return Cancelled(len(ended) + len(flagged), page[-1].id if more else None)
