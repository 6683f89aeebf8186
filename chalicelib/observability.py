"""Logs, metrics and traces, with Powertools for AWS Lambda.

Logs are JSON lines carrying the request id, and the owner and job id where one is known. Metrics
go out in CloudWatch's embedded metric format (EMF) on stdout, flushed once per invocation, so
CloudWatch turns log lines into metrics with no API call. The tracer is a no-op unless tracing is
switched on (Chalice `"xray": true`, `POWERTOOLS_TRACE_DISABLED=false` and the X-Ray SDK present,
as in AWS's Powertools layer).
"""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "jobs"
NAMESPACE = "Jobs"

#: Level from POWERTOOLS_LOG_LEVEL (default INFO).
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add to a counter metric of this invocation (JobsSubmitted, JobsCompleted, ...)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    """Record a duration metric of this invocation (JobDuration, QueueWait, ChunkTime)."""
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(value, 3))


def around_invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for every function: fresh log keys per invocation, metrics flushed at the end."""
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    logger.clear_state()
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    try:
        return get_response(event)
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
