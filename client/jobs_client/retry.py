"""When a request is sent again, and after how long.

- 429 (the usage plan's rate, or ActiveJobLimit): always, since the request was refused before it did
  anything: API Gateway throttles before the function runs, and an over-limit job is not kept.
- 502, 503, 504 and connection errors (refused, reset, timed out): only where a repeat cannot make a
  second effect: GET, HEAD, DELETE (a repeated cancel is harmless), and a POST that carries an
  `Idempotency-Key` (the API answers a repeat with the first job).
- Everything else: never.

The n-th wait (n from 0) is exponential with jitter, between half and all of
`min(max_delay, base_delay * 2**n)`, so clients that were throttled together spread out; a
`Retry-After` from the server is waited at least. After `max_retries` the error is raised.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from time import time

#: Statuses of a gateway or a dependency in trouble, worth another try where a repeat is safe.
TRANSIENT = frozenset({502, 503, 504})
#: Methods a repeat of cannot do a second thing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait before sending a request again."""

    #: Retries after the first attempt (so at most max_retries + 1 requests).
    max_retries: int = 8
    #: Seconds of the first wait's ceiling; each next ceiling doubles.
    base_delay: float = 0.5
    #: Longest wait between two attempts, Retry-After aside.
    max_delay: float = 30.0
    #: Longest Retry-After honoured (a longer one is waited this long).
    max_retry_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def safe(self, method: str, headers: dict[str, str] | None) -> bool:
        """Whether a transient failure of this request may be retried."""
        if method.upper() in SAFE_METHODS:
            return True
        return method.upper() == "POST" and any(k.lower() == "idempotency-key" for k in headers or {})

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first)."""
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        wait = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def after_status(self, status: int, attempt: int, *, safe: bool, retry_after: float | None) -> float | None:
        """Seconds to wait before sending again after this status, or None: do not."""
        if attempt >= self.max_retries:
            return None
        if status == 429 or (status in TRANSIENT and safe):
            return self.delay(attempt, retry_after)
        return None

    def after_error(self, attempt: int, *, safe: bool) -> float | None:
        """Seconds to wait before sending again after a connection error, or None: do not."""
        if attempt >= self.max_retries or not safe:
            return None
        return self.delay(attempt)


#: No retries at all (tests, or callers that retry themselves).
NO_RETRIES = RetryPolicy(max_retries=0)
