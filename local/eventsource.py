"""The SQS -> Lambda event source mapping, emulated: receive, invoke with Lambda's event shape, delete.

Used by the local runner and by the tests, so the worker is always fed exactly what Lambda feeds it:
records built from messages really received from the queue, a context with a deadline, and the
partial batch response honoured (failed records are left for SQS to deliver again).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers use."""

    timeout_seconds: float = 60.0
    function_name: str = "jobs-dev-run_jobs"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of Lambda's SQS event from one message of ReceiveMessage."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def scheduled_event(rule_arn: str, *, region: str = "us-east-1") -> dict[str, Any]:
    """The event EventBridge gives a function on a schedule (what Chalice's @app.schedule reads)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class EventSource:
    """One SQS queue feeding one handler, as a Lambda event source mapping does."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Callable[[dict, Any], Any],
        *,
        batch_size: int = 10,
        function_timeout: float = 60.0,
    ):
        self._sqs = sqs
        self.queue_url = queue_url
        self._handler = handler
        self.batch_size = batch_size
        self.function_timeout = function_timeout
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attrs["QueueArn"]
        self.region = self.queue_arn.split(":")[3]

    def receive(self, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive up to one batch of messages (long-polling up to `wait_seconds`)."""
        reply = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return reply.get("Messages", [])

    def invoke(self, messages: list[dict[str, Any]], context: LambdaContext | None = None) -> list[str]:
        """Hand the messages to the handler as one event; delete those it did not report failed.

        Returns the message ids the handler reported failed. If the handler raises, the whole
        batch stays on the queue, as with Lambda.
        """
        event = {"Records": [sqs_record(m, queue_arn=self.queue_arn, region=self.region) for m in messages]}
        reply = self._handler(event, context or LambdaContext(timeout_seconds=self.function_timeout))
        failed = {item["itemIdentifier"] for item in (reply or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return sorted(failed)

    def poll_once(self, *, wait_seconds: int = 0) -> int:
        """Receive one batch and invoke the handler with it; returns how many records it carried."""
        messages = self.receive(wait_seconds=wait_seconds)
        if messages:
            self.invoke(messages)
        return len(messages)

    def drain(self, *, max_batches: int = 1000) -> int:
        """Invoke the handler until the queue has nothing visible; returns the records handled."""
        handled = 0
        for _ in range(max_batches):
            count = self.poll_once()
            if count == 0:
                return handled
            handled += count
        raise RuntimeError(f"queue not drained after {max_batches} batches")
