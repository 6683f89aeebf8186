"""SQS with boto3: the only module that speaks to the jobs queue.

A message carries the job id and, when a worker hands the job on (a hand-off before the time
limit, or a retry after a delay), the token of its lease, so the next invocation inherits the
lease instead of taking it over. The job itself lives in MySQL, so a lost or duplicated message
loses or doubles nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import aws, errors


def connect(*, endpoint_url: str | None, region: str) -> Any:
    """An SQS client; `endpoint_url` points it at LocalStack or moto, None at AWS."""
    return aws.client("sqs", endpoint_url=endpoint_url, region=region)


class JobQueue:
    """The jobs queue. Its client is made on first send, so routes that send nothing never import boto3."""

    def __init__(self, connect: Callable[[], Any], queue_url: str):
        self._connect = connect
        self._client: Any = None
        self.url = queue_url

    @property
    def _sqs(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def send_job(self, job_id: str, *, lease: str | None = None, delay_seconds: int = 0) -> str:
        """Ask a worker to run (or carry on with) the job; returns the SQS message id.

        `lease` hands the sender's lease to the invocation that receives it; `delay_seconds`
        (at most SQS's 900) keeps the message invisible that long.
        """
        try:
            reply = self._sqs.send_message(
                QueueUrl=self.url, MessageBody=Message(job_id, lease).body(), DelaySeconds=delay_seconds
            )
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            raise errors.QueueUnavailable(f"SQS: {exc}") from exc
        return reply["MessageId"]

    def ping(self) -> None:
        """One cheap call, for health checks."""
        try:
            self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        except Exception as exc:
            raise errors.QueueUnavailable(f"SQS: {exc}") from exc


@dataclass(frozen=True)
class Message:
    """What a jobs-queue message says: which job, and the lease it hands on (if any)."""

    job_id: str
    lease: str | None = None

    def body(self) -> str:
        fields = {"jobId": self.job_id, **({"lease": self.lease} if self.lease else {})}
        return json.dumps(fields, separators=(",", ":"))


def parse_message(body: str) -> Message:
    """The message a queue body carries; ValueError for anything else."""
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("jobId"), str):
        raise ValueError("not a job message")
    lease = message.get("lease")
    return Message(message["jobId"], lease if isinstance(lease, str) and lease else None)
