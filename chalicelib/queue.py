"""SQS with boto3: the only module that speaks to the jobs queue.

A message carries the job id and, when a worker hands the job on (a hand-off before the time
limit, a retry after a delay, a wait for a dependency), the token of its lease, so the next
invocation inherits the lease instead of taking it over, and the hand-off's number in the chain of
that token (`hop`), so that only one invocation takes a given hand-off, however often it is
delivered (hotstate.acquire). The job itself lives in MySQL, so a lost or duplicated message loses
or doubles nothing.

Every message carries its job's owner, as the body's `owner` and as its `MessageGroupId`: on a
standard queue SQS takes the group for the tenant of its fair queues, and when one tenant holds a
disproportionate share of the messages in flight it returns the others' first
(../shared/notes/lambda-sqs-limits.md; moto accepts the id but reorders nothing, so only the caps
of the tenant limits can be shown here). Re-sends of a received message keep it.

A message may also carry what the worker needs of its job's row (`job`: `carry`), so that the
worker starts a job, or takes a hand-off on, without reading MySQL first: three statements per job
in all (the insert, the start, the final write). Only the two hot paths trust it, and each is
checked against the truth for free: a start is an UPDATE guarded by the status and the attempts
the message names, and a hand-off's lease and checkpoint sequence are Redis's; anything else (a
take-over, a job that ended, a message that came back) reads the row (worker.py). The row is
carried only while the message stays within one SQS request (CARRY_MAX_BYTES).

A job has a priority (models.Priority), and every message of a high job goes to the high-priority
queue, which has its own dead-letter queue, event source mapping and reserved concurrency: a backlog
of normal jobs never delays it. JobQueue picks the queue by the priority each send names, so no
sender knows a queue URL; the message says its priority too (`priority`, only when high), so a
re-send of a received message (a deferral, a record with no time left, a dead letter sent again)
goes back to its job's own queue without the row. Without a high-priority queue configured
(JOBS_HIGH_QUEUE_URL empty) every job shares the jobs queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import aws, errors
from .models import Job, JobStatus, Priority, as_utc

if TYPE_CHECKING:
    from concurrent.futures import Future

#: A message whose body would be longer than this goes without its job's row (the worker reads it):
#: SQS bills a message per 64 KiB, and the body limit is 256 KiB.
CARRY_MAX_BYTES = 64 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def connect(*, endpoint_url: str | None, region: str) -> Any:
    """An SQS client; `endpoint_url` points it at LocalStack or moto, None at AWS."""
    return aws.client("sqs", endpoint_url=endpoint_url, region=region)


#: How long a received message's delete waits for others to join its DeleteMessageBatch: a crash
#: in that time after a job ended brings its message back, and it is dropped without running.
DELETE_LINGER_SECONDS = 0.5

#: SQS's longest DelaySeconds.
MAX_DELAY_SECONDS = 900
#: Most messages of one SendMessageBatch, and most bytes of their bodies together.
BATCH_SIZE, BATCH_MAX_BYTES = 10, 256 * 1024
#: SendMessageBatch requests of one `send_jobs` in flight at once (a 500-job batch is 50 requests).
SEND_CONCURRENCY = 8


def seconds_until(moment: datetime | None, now: datetime) -> int:
    """Whole seconds from `now` to `moment`, rounded down, never below 0 (0 for no moment): the
    delay a scheduled job's message is sent with, so it comes at most a second early and the worker
    waits the rest out (worker._due). Not capped: above MAX_DELAY_SECONDS it waits in MySQL."""
    if moment is None:
        return 0
    return max(0, int((as_utc(moment) - now).total_seconds()))


class JobQueue:
    """The jobs queue and the high-priority one. Its client is made on first send, so routes that
    send nothing never import boto3."""

    def __init__(self, connect: Callable[[], Any], queue_url: str, *, high_url: str = ""):
        self._connect = connect
        self._client: Any = None
        self.url = queue_url
        #: The high-priority queue; empty: high jobs share the jobs queue.
        self.high_url = high_url
        self._urls: dict[str, str] = {}
        self._deletes: Deletes | None = None

    def url_for(self, priority: Priority) -> str:
        """The queue a job of this priority is sent to."""
        return self.high_url if priority is Priority.HIGH and self.high_url else self.url

    @property
    def _sqs(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def send_job(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        priority: Priority = Priority.NORMAL,
        lease: str | None = None,
        hop: int | None = None,
        dead_letters: int = 0,
        deferrals: int = 0,
        delay_seconds: int = 0,
        job: dict[str, Any] | None = None,
    ) -> str:
        """Ask a worker to run (or carry on with) the job; returns the SQS message id.

        `owner` is the job's (its fair-queue group); `priority` is the job's, and picks the queue;
        `lease` hands the sender's lease to the invocation that receives it, `hop` numbers that
        hand-off; `dead_letters` counts the times the dead-letter handler sent the job again,
        `deferrals` the times a worker put off its start (no free slot); `delay_seconds` (at most
        SQS's 900) keeps the message invisible that long; `job` (from `carry`) is the row the worker
        starts from, left out if the body grows too long.
        """
        message = Message(job_id, lease, hop, dead_letters, owner, deferrals, job, priority)
        body = message.body()
        if job is not None and len(body) > CARRY_MAX_BYTES:
            body = replace(message, job=None).body()
        group = {"MessageGroupId": owner} if owner else {}
        url = self.url_for(priority)
        try:
            reply = self._sqs.send_message(QueueUrl=url, MessageBody=body, DelaySeconds=delay_seconds, **group)
        except Exception as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            raise errors.QueueUnavailable(f"SQS: {exc}") from exc
        return reply["MessageId"]

    def send_jobs(self, jobs: list[tuple[Job, int]]) -> list[str]:
        """Send a message for each (job, delay in seconds), up to ten and 256 KiB to a request
        (SendMessageBatch's limits), SEND_CONCURRENCY requests at a time (a boto3 client is
        thread-safe), each to its job's queue (a request goes to one queue); returns the ids of the
        jobs whose message did not go out."""
        by_queue: dict[str, list[tuple[Job, int, str]]] = {}
        for job, delay in jobs:
            by_queue.setdefault(self.url_for(job.priority), []).append((job, delay, self._body(job)))
        groups = [(url, group) for url, items in by_queue.items() for group in _batches(items)]
        if len(groups) <= 1:
            return [job_id for url, group in groups for job_id in self._send_batch(url, group)]
        from concurrent.futures import ThreadPoolExecutor  # only a batch's submit needs it: off the cold start

        sqs = self._sqs  # made once, before the threads share it
        with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(groups))) as pool:
            sent = pool.map(lambda queued: self._send_batch(queued[0], queued[1], sqs), groups)
            return [job_id for failed in sent for job_id in failed]

    def _send_batch(self, url: str, group: list[tuple[Job, int, str]], sqs: Any = None) -> list[str]:
        """One SendMessageBatch to the queue at `url`; the ids of the jobs it did not send."""
        entries = [
            {"Id": str(i), "MessageBody": body, "DelaySeconds": delay, "MessageGroupId": job.owner}
            for i, (job, delay, body) in enumerate(group)
        ]
        try:
            reply = (sqs or self._sqs).send_message_batch(QueueUrl=url, Entries=entries)
        except Exception:  # botocore's ClientError, EndpointConnectionError, timeouts...
            return [job.id for job, _, _ in group]
        return [group[int(entry["Id"])][0].id for entry in reply.get("Failed", [])]

    @staticmethod
    def _body(job: Job) -> str:
        body = Message(job.id, owner=job.owner, job=carry(job), priority=job.priority).body()
        return body if len(body) <= CARRY_MAX_BYTES else Message(job.id, owner=job.owner, priority=job.priority).body()

    def resend(self, message: Message, *, owner: str | None = None, dead_letters: int | None = None) -> str:
        """Send a received message again as a new one (its lease, hop and counts kept)."""
        return self.send_job(
            message.job_id,
            owner=owner or message.owner,
            priority=message.priority,
            lease=message.lease,
            hop=message.hop,
            dead_letters=message.dead_letters if dead_letters is None else dead_letters,
            deferrals=message.deferrals,
            job=message.job,
        )

    def delete_soon(self, receipt_handle: str, *, queue_arn: str) -> Future[None]:
        """Delete a received message, so that a later crash of the invocation that received it
        cannot bring it back (Lambda's own delete of it later is harmless). The delete goes out on
        a thread of the queue's own while the caller goes on (the worker, to its next record), up to
        ten to a DeleteMessageBatch (`Deletes`); the future raises QueueUnavailable when SQS refused,
        and whoever asks calls `flush_deletes` and waits for it before the invocation returns (Lambda
        freezes a container's threads in between)."""
        from concurrent.futures import Future

        try:  # the client and the URL made in the caller's thread, before the thread shares them
            sqs, url = self._sqs, self._url_of(queue_arn)
        except Exception as exc:
            refused: Future[None] = Future()
            refused.set_exception(errors.QueueUnavailable(f"SQS: {exc}"))
            return refused
        if self._deletes is None:
            self._deletes = Deletes(sqs)
        return self._deletes.add(url, receipt_handle)

    def flush_deletes(self) -> None:
        """Send the deletes waiting for others to join them now (the invocation is about to return)."""
        if self._deletes is not None:
            self._deletes.flush()

    def _url_of(self, queue_arn: str) -> str:
        """The URL of the queue a record came from (its eventSourceARN): ours (the jobs queue, the
        high-priority one) without a request, any other from one GetQueueUrl, kept for the
        container's life."""
        account, name = queue_arn.split(":")[4:6]  # arn:aws:sqs:<region>:<account>:<name>
        for url in (self.url, self.high_url):
            if url and url.rstrip("/").rsplit("/", 1)[-1] == name:
                return url
        if queue_arn not in self._urls:
            reply = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._urls[queue_arn] = reply["QueueUrl"]
        return self._urls[queue_arn]

    def ping(self) -> None:
        """One cheap call per queue a submission may go to (the high-priority one too, when set), for
        health checks."""
        for url in filter(None, (self.url, self.high_url)):
            try:
                self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            except Exception as exc:
                raise errors.QueueUnavailable(f"SQS: {exc}") from exc


@dataclass(frozen=True)
class Message:
    """What a jobs-queue message says: which job, the lease it hands on and that hand-off's number
    (if any), and how often the dead-letter handler has sent the job again."""

    job_id: str
    lease: str | None = None
    #: The hand-off's number in the chain of `lease` (1 for the first hand-off of a token).
    hop: int | None = None
    dead_letters: int = 0
    #: The job's owner (also the message's MessageGroupId), when the sender knew it.
    owner: str | None = None
    #: How often a worker put the job's start off for want of a free slot (the next wait grows).
    deferrals: int = 0
    #: What the worker needs of the job's row, as `carry` wrote it (None: it reads the row).
    job: dict[str, Any] | None = None
    #: The job's priority: the queue a re-send of this message goes to.
    priority: Priority = Priority.NORMAL

    def body(self) -> str:
        fields: dict[str, Any] = {"jobId": self.job_id}
        if self.owner:
            fields["owner"] = self.owner
        if self.lease:
            fields["lease"] = self.lease
        if self.lease and self.hop is not None:
            fields["hop"] = self.hop
        if self.dead_letters:
            fields["deadLetters"] = self.dead_letters
        if self.deferrals:
            fields["deferrals"] = self.deferrals
        if self.priority is not Priority.NORMAL:
            fields["priority"] = self.priority.value
        if self.job is not None:
            fields["job"] = self.job
        return json.dumps(fields, separators=(",", ":"))


class Deletes:
    """Deletes of received messages, sent on a thread of their own, up to ten to a DeleteMessageBatch
    (one queue's). A delete waits up to DELETE_LINGER_SECONDS for others to join it, unless ten are
    waiting or `flush` asks: a worker's short jobs end within that, so a batch of ten records costs
    one request where it cost nine DeleteMessage (boto3's ~1.5 ms of CPU each, measured: more than
    the rest of a ten-chunk job), while a long job's delete still goes out moments after it ends."""

    def __init__(self, sqs: Any):
        import threading
        from concurrent.futures import ThreadPoolExecutor  # only the worker deletes: off the API's cold start

        self._sqs = sqs
        self._changed = threading.Condition()
        self._pending: list[tuple[str, str, Future[None]]] = []
        self._draining = self._flushing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqs-delete")

    def add(self, url: str, receipt_handle: str) -> Future[None]:
        from concurrent.futures import Future

        done: Future[None] = Future()
        with self._changed:
            self._pending.append((url, receipt_handle, done))
            self._changed.notify()
            if not self._draining:
                self._draining = True
                self._thread.submit(self._drain)
        return done

    def flush(self) -> None:
        with self._changed:
            self._flushing = bool(self._pending)
            self._changed.notify()

    def _drain(self) -> None:
        """Send what is pending, a request at a time, until nothing is."""
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._flushing or len(self._pending) >= BATCH_SIZE, timeout=DELETE_LINGER_SECONDS
                )
                url = self._pending[0][0]
                group = [item for item in self._pending if item[0] == url][:BATCH_SIZE]
                self._pending = [item for item in self._pending if item not in group]
                self._flushing = self._flushing and bool(self._pending)
            self._send(url, group)
            with self._changed:
                if not self._pending:
                    self._draining = False
                    return

    def _send(self, url: str, group: list[tuple[str, str, Future[None]]]) -> None:
        """One DeleteMessageBatch; every future is answered, whatever happens."""
        try:
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle, _) in enumerate(group)]
            reply = self._sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            failed = {entry["Id"]: entry for entry in reply.get("Failed", [])}
        except BaseException as exc:  # botocore's ClientError, EndpointConnectionError, timeouts...
            failed = {str(i): {"Code": type(exc).__name__, "Message": str(exc)} for i in range(len(group))}
        for i, (_, _, done) in enumerate(group):
            refusal = failed.get(str(i))
            if refusal is None:
                done.set_result(None)
            else:
                done.set_exception(errors.QueueUnavailable(f"SQS: {refusal.get('Code')}: {refusal.get('Message')}"))


def _batches(items: list[tuple[Job, int, str]]) -> list[list[tuple[Job, int, str]]]:
    """The items in order, in groups of at most BATCH_SIZE whose bodies sum to at most BATCH_MAX_BYTES."""
    groups: list[list[tuple[Job, int, str]]] = []
    size = 0
    for item in items:
        length = len(item[2])
        if not groups or len(groups[-1]) == BATCH_SIZE or size + length > BATCH_MAX_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += length
    return groups


def parse_message(body: str) -> Message:
    """The message a queue body carries; ValueError for anything else."""
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("jobId"), str):
        raise ValueError("not a job message")
    lease, hop, owner = message.get("lease"), message.get("hop"), message.get("owner")
    lease = lease if isinstance(lease, str) and lease else None
    return Message(
        message["jobId"],
        lease,
        hop if lease and _count(hop) else None,
        _count(message.get("deadLetters")),
        owner if isinstance(owner, str) and owner else None,
        _count(message.get("deferrals")),
        message.get("job") if isinstance(message.get("job"), dict) else None,
        Priority.HIGH if message.get("priority") == Priority.HIGH.value else Priority.NORMAL,
    )


def carry(job: Job, *, seq: int = 0) -> dict[str, Any] | None:
    """What a message carries of the job's row: its fixed columns, its attempts and, once it runs,
    its start, its deaths and `seq`, the sequence number of the newest checkpoint the sender wrote.
    None for a job neither PENDING nor RUNNING (a SCHEDULED one's row says when it is due)."""
    if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
        return None
    fields: dict[str, Any] = {
        "status": job.status.value,
        "type": job.type,
        "payload": job.payload,
        "maxAttempts": job.max_attempts,
        "timeoutSeconds": job.timeout_seconds,
        "attempts": job.attempts,
        "createdAt": _ms(job.created_at),
    }
    if job.callback_url is not None:  # its final write is the webhook's outbox (lifecycle.py)
        fields["callbackUrl"] = job.callback_url
    if job.previous_error is not None:  # a retried job's views keep showing it
        fields["previousError"] = job.previous_error
    if job.batch_id is not None:  # shown in its views
        fields["batchId"] = job.batch_id
    if job.depends_on is not None:
        fields["dependsOn"] = job.depends_on
    if job.status is JobStatus.RUNNING:
        fields.update(startedAt=_ms(job.started_at), deaths=job.deaths, deathChunk=job.death_chunk, seq=seq)
        if job.error is not None:
            fields["error"] = job.error
    return fields


@dataclass(frozen=True)
class Carried:
    """The job a message carries, as the row would read (no checkpoint: Redis has it, else MySQL)."""

    job: Job
    #: The sequence number of the newest checkpoint the sender wrote (0 for a job not started).
    seq: int = 0


def carried(message: Message) -> Carried | None:
    """The job `message` carries, with the lease it hands on as the fence; None if it carries none
    (or not in a shape `carry` writes: the worker then reads the row)."""
    fields = message.job
    if fields is None or message.owner is None:
        return None
    try:
        status = JobStatus(fields["status"])
        if status not in (JobStatus.PENDING, JobStatus.RUNNING) or (status is JobStatus.RUNNING) != bool(message.lease):
            return None
        job = Job(
            id=message.job_id,
            owner=message.owner,
            type=str(fields["type"]),
            status=status,
            payload=dict(fields["payload"]),
            created_at=_moment(fields["createdAt"]),
            updated_at=_moment(fields["createdAt"]),
            max_attempts=int(fields["maxAttempts"]),
            timeout_seconds=int(fields["timeoutSeconds"]),
            attempts=int(fields["attempts"]),
            callback_url=fields.get("callbackUrl"),
            previous_error=fields.get("previousError"),
            priority=message.priority,
            batch_id=fields.get("batchId"),
            depends_on=fields.get("dependsOn"),
        )
        if status is JobStatus.RUNNING:
            job.started_at = job.updated_at = _moment(fields["startedAt"])
            job.lease_token, job.deaths, job.death_chunk = message.lease, int(fields["deaths"]), fields["deathChunk"]
            job.error = fields.get("error")
        return Carried(job, int(fields.get("seq", 0)))
    except (KeyError, TypeError, ValueError):
        return None


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else (as_utc(moment) - _EPOCH) // timedelta(milliseconds=1)


def _moment(ms: Any) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _count(value: Any) -> int:
    """A positive integer of a message, or 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class DeliveryMessage:
    """What a webhooks-queue message says: which job's webhook, which attempt of it is due, and not
    before when (epoch ms; SQS delays a message at most 900 s, so a longer wait takes several hops)."""

    job_id: str
    attempt: int = 1
    not_before_ms: int = 0

    def body(self) -> str:
        fields: dict[str, Any] = {"webhook": self.job_id, "attempt": self.attempt}
        if self.not_before_ms:
            fields["notBefore"] = self.not_before_ms
        return json.dumps(fields, separators=(",", ":"))


def parse_delivery(body: str) -> DeliveryMessage:
    """The delivery a webhooks-queue body asks for; ValueError for anything else."""
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("webhook"), str):
        raise ValueError("not a webhook message")
    return DeliveryMessage(message["webhook"], _count(message.get("attempt")) or 1, _count(message.get("notBefore")))


class DeliveryQueue:
    """The webhooks queue: one message per due delivery attempt. Its client is made on first send."""

    def __init__(self, connect: Callable[[], Any], queue_url: str):
        self._connect = connect
        self._client: Any = None
        self.url = queue_url

    @property
    def _sqs(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def send(self, message: DeliveryMessage, *, delay_seconds: int = 0) -> str:
        """Queue the delivery (`delay_seconds` at most SQS's 900); returns the SQS message id."""
        try:
            reply = self._sqs.send_message(QueueUrl=self.url, MessageBody=message.body(), DelaySeconds=delay_seconds)
        except Exception as exc:
            raise errors.QueueUnavailable(f"SQS: {exc}") from exc
        return reply["MessageId"]
