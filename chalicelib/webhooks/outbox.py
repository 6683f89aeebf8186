"""The webhook outbox: a job's end is on the webhooks queue at least once, whatever dies when.

The job row is the outbox. A job with a callback is inserted WAITING; its final UPDATE (lifecycle.py)
sets `callback_due_at`, so from that statement on the row says "an ended job whose webhook is not on
the queue". Right after it the ender (worker, sweeper, a cancel) sends the first attempt's message
and marks the row QUEUED: the one statement more that a job with a callback costs. A crash or an SQS
refusal in between leaves the row WAITING, and the sweeper (`sweep_waiting`) sends it once it is
WEBHOOK_RESEND_SECONDS old. A message lost later (a delivery function that died after recording
an attempt but before queueing the next) leaves a QUEUED row past due: the sweeper sends it again
after WEBHOOK_LOST_SECONDS (`sweep_lost`). A copy that turns out needless is dropped by the delivery
function, which runs only the attempt the row says is next.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from .. import errors
from ..models import CallbackState, Job, utcnow
from ..observability import logger as log
from ..queue import DeliveryMessage, DeliveryQueue
from ..store import JobStore


class Outbox:
    """Puts ended jobs' webhooks on the webhooks queue."""

    def __init__(self, store: JobStore, queue: DeliveryQueue):
        self._store = store
        self._queue = queue

    def after_end(self, job: Job) -> None:
        """Queue the first attempt of an ended job's webhook and mark the row; a failure is left to
        the sweeper (the row stays WAITING), never raised: the job has ended either way."""
        self.after_ends([job])

    def after_ends(self, jobs: Sequence[Job]) -> None:
        """`after_end` of several ended jobs (a bulk cancel's): a message each, one UPDATE marks them."""
        if not self._queue.configured:
            return
        queued = []
        for job in jobs:
            if job.callback_url is None:
                continue
            try:
                self._queue.send(DeliveryMessage(job.id))
            except errors.QueueUnavailable:
                log.warning("job %s: webhook not queued; the sweeper will queue it", job.id, exc_info=True)
                break
            queued.append(job.id)
        try:
            self._store.callback_queued(queued, at=utcnow())
        except errors.StoreUnavailable:
            # The sweeper queues them a second time; the delivery function runs each first attempt once.
            log.warning("webhooks of %d jobs queued but not marked", len(queued), exc_info=True)

    def sweep_waiting(self, now: datetime, *, after_seconds: int, limit: int) -> int:
        """Queue the webhooks of jobs that ended `after_seconds` ago or more and are still WAITING."""
        return self._sweep(CallbackState.WAITING, now, after_seconds, limit, mark=self._store.callback_queued)

    def sweep_lost(self, now: datetime, *, after_seconds: int, limit: int) -> int:
        """Queue again the next attempt of webhooks QUEUED and past due by `after_seconds`."""
        return self._sweep(CallbackState.QUEUED, now, after_seconds, limit, mark=self._store.touch_callbacks)

    def _sweep(self, state: CallbackState, now: datetime, after_seconds: int, limit: int, *, mark) -> int:
        if not self._queue.configured:
            return 0
        due = self._store.callbacks_due(state, due_before=now - timedelta(seconds=after_seconds), limit=limit)
        sent = self._send(due)
        mark(sent, at=now)
        return len(sent)

    def _send(self, due: Sequence[tuple[str, str, int]]) -> list[str]:
        sent = []
        for job_id, _owner, made in due:
            try:
                self._queue.send(DeliveryMessage(job_id, attempt=made + 1))
            except errors.QueueUnavailable:
                log.warning("sweeper: webhook of job %s not queued; next pass", job_id, exc_info=True)
                break
            sent.append(job_id)
        if sent:
            log.warning("sweeper queued %d webhooks", len(sent), extra={"job_ids": sent[:20]})
        return sent
