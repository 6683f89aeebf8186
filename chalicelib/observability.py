"""Logs, metrics and traces, with Powertools for AWS Lambda.

Logs are JSON lines carrying the request id, and the owner and job id where one is known. Metrics
go out in CloudWatch's embedded metric format (EMF) on stdout, flushed once per invocation, so
CloudWatch turns log lines into metrics with no API call. Tracing is off unless TRACING=on (with
Chalice's `"xray": true` and the X-Ray SDK present, as in AWS's Powertools layer): Powertools'
Tracer imports the X-Ray SDK whenever it is installed, about 250 ms measured here, so it is only
created when tracing is wanted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from .config import tracing_on

SERVICE = "jobs"
NAMESPACE = "Jobs"

#: Level from POWERTOOLS_LOG_LEVEL (default INFO).
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_tracer = None


#: Counters of this invocation, summed here and handed to Powertools once each at its end: an
#: `add_metric` costs tens of microseconds, once per job or chunk it was most of the worker's overhead.
_counts: dict[str, float] = {}
_counts_lock = threading.Lock()


def count(name: str, value: int = 1) -> None:
    """Add to a counter metric of this invocation (JobsSubmitted, JobsCompleted, ...): one value per
    name and invocation, the sum."""
    with _counts_lock:
        _counts[name] = _counts.get(name, 0) + value


def count_by(name: str, *, dimensions: dict[str, str], value: int = 1) -> None:
    """A counter with dimensions of its own (JobsDeferred by Reason and Owner), written at once as
    its own EMF line. Keep every dimension's values bounded: CloudWatch bills each combination as a
    metric (owners are the usage-plans file's clients, types the registered ones)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def milliseconds(name: str, value: float) -> None:
    """Record a duration metric of this invocation (JobDuration, QueueWait; ChunkTime, a run's mean)."""
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(value, 3))


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log lines written inside carry `job_id` (and `owner`, once `job_owner` names it)."""
    logger.thread_safe_append_keys(job_id=job_id)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["job_id", "owner"])


def job_owner(owner: str) -> None:
    """Log lines of the current job_context carry its owner too (known once the row is read)."""
    logger.thread_safe_append_keys(owner=owner)


def around_invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for every function: fresh log keys per invocation, metrics flushed at the end."""
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    # Thread-safe keys: the same as plain ones in a Lambda container (one thread), and they keep
    # concurrent invocations of the local runtime (threads of one process) apart.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(request_id=getattr(context, "aws_request_id", None))
    try:
        return get_response(event)
    finally:
        flush()


def flush() -> None:
    """Write this invocation's metrics (one EMF line) and start counting afresh."""
    with _counts_lock:
        counts = list(_counts.items())
        _counts.clear()
    for name, value in counts:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if metrics.metric_set:
        metrics.flush_metrics()


def traced(method: Callable) -> Callable:
    """A subsegment per call when tracing is on; responses are not recorded (they may hold results)."""
    global _tracer
    if not tracing_on():
        return method
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer.capture_method(capture_response=False)(method)
