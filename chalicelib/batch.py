"""Lambda's SQS batch protocol, shared by the worker and the dead-letter handler.

Lambda hands a function a batch of SQS records; with ReportBatchItemFailures on the event source
mapping (infra/deploy.py sets it) the function answers which of them SQS must deliver again,
`{"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}`, and SQS deletes the others, so one
bad record never re-runs its neighbours. A record whose body is not a job message is dropped
(reported done): nothing can ever run from it, and delivering it again would only feed the
dead-letter queue.

Why not Powertools' batch utility (`BatchProcessor` + `process_partial_response`), which builds the
same response: it signals a failed record by an exception, and keeps every failed record's
exc_info (tracebacks, with their frames) on the processor; by default it raises when every record
of a batch failed (`raise_on_entire_batch_failure`), which would fail the whole invocation; and it
leaves the parsing of our messages, the drop rule and the worker's time-left rule to us anyway.
Importing it costs about 10 ms and 44 modules (all of Powertools' event classes) on top of `app`.
What is left to write is the few lines below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .observability import logger as log
from .queue import Message, parse_message


@dataclass(frozen=True)
class JobRecord:
    """An SQS record that carries a job message."""

    message_id: str
    message: Message
    #: How many times SQS has delivered the message (its ApproximateReceiveCount).
    receive_count: int
    #: What deletes the message, and the queue it came from (empty in records built by hand).
    receipt_handle: str = ""
    queue_arn: str = ""


def job_records(records: list[dict[str, Any]], *, source: str) -> list[JobRecord]:
    """The records of a batch that carry a job message, in order; the others are dropped and logged."""
    found = []
    for record in records:
        try:
            message = parse_message(record["body"])
        except ValueError:
            log.error("%s %s is not a job message: dropped", source, record.get("messageId"))
            continue
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
        if receives > 1 and message.job is not None:
            # It came back (a crash, a time limit): the row it carries may be behind; the worker reads it.
            message = replace(message, job=None)
        found.append(
            JobRecord(
                record["messageId"],
                message,
                receives,
                record.get("receiptHandle", ""),
                record.get("eventSourceARN", ""),
            )
        )
    return found


def response(failed: Iterable[JobRecord]) -> dict[str, Any]:
    """The partial batch response: the records SQS must deliver again, all others done."""
    return {"batchItemFailures": [{"itemIdentifier": record.message_id} for record in failed]}
