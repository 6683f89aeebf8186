"""API Gateway in front of the local API: API keys and usage plans, from infra/usage-plans.json.

The same definition file that infra/deploy.py deploys. For a route with `api_key_required`:
a missing or unknown `x-api-key` is 403 `{"message": "Forbidden"}`; over the plan's rate or burst,
429 `{"message": "Too Many Requests"}`; over its quota, 429 `{"message": "Limit Exceeded"}` (API
Gateway's own words for each). Throttling is a token bucket per key: it holds `burstLimit` tokens,
refills at `rateLimit` per second, and each request takes one. Quotas count the requests let
through per UTC day, week (from Monday) or month. The function then sees the key's id in
`requestContext.identity.apiKeyId`, as behind API Gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import ForbiddenError, LocalGateway, LocalGatewayException

from infra import usage_plans
from infra.usage_plans import Plan, UsagePlans


class TooManyRequestsError(LocalGatewayException):
    CODE = 429


def local_key_value(client: usage_plans.Client) -> str:
    """The key a client sends locally: its fixed value, or one made from its name."""
    return client.value or f"{client.name}-local-key"


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; a request takes one or is refused."""

    rate: float
    capacity: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens, self.stamp = float(self.capacity), self.clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def quota_period(period: str, moment: datetime) -> str:
    """The name of the quota period `moment` falls in (periods restart at 00:00 UTC)."""
    if period == "DAY":
        return moment.strftime("%Y-%m-%d")
    if period == "WEEK":
        year, week, _ = moment.isocalendar()
        return f"{year}-W{week:02d}"
    return moment.strftime("%Y-%m")


@dataclass
class _Key:
    key_id: str
    plan: Plan
    bucket: TokenBucket
    used: dict[str, int] = field(default_factory=dict)


class Keyring:
    """The keys of the definition file with their limits and usage; shared by all request threads."""

    def __init__(
        self,
        plans: UsagePlans,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._lock = threading.Lock()
        self._now = now
        self._keys = {
            local_key_value(client): _Key(
                client.name,
                plans.plans[client.plan],
                TokenBucket(plans.plans[client.plan].rate_limit, plans.plans[client.plan].burst_limit, clock),
            )
            for client in plans.clients.values()
            if client.enabled
        }

    @classmethod
    def from_file(cls, path: str | Path = usage_plans.DEFAULT_PATH) -> Keyring:
        return cls(usage_plans.load(path))

    def values(self) -> dict[str, str]:
        """key id -> the value a client sends."""
        return {key.key_id: value for value, key in self._keys.items()}

    def admit(self, value: str | None) -> str:
        """The key id of a request that may pass; raises the gateway's 403 or 429 otherwise."""
        key = self._keys.get(value or "")
        if key is None:
            raise ForbiddenError({"x-amzn-ErrorType": "ForbiddenException"}, b'{"message":"Forbidden"}')
        with self._lock:
            if not key.bucket.take():
                raise TooManyRequestsError(
                    {"x-amzn-ErrorType": "TooManyRequestsException"}, b'{"message":"Too Many Requests"}'
                )
            quota = key.plan.quota
            if quota is not None:
                period = quota_period(quota.period, self._now())
                if key.used.get(period, 0) >= quota.limit:
                    raise TooManyRequestsError(
                        {"x-amzn-ErrorType": "LimitExceededException"}, b'{"message":"Limit Exceeded"}'
                    )
                key.used = {period: key.used.get(period, 0) + 1}
        return key.key_id


class ApiGateway(LocalGateway):
    """Chalice's local gateway plus API keys and usage plans."""

    def __init__(self, app_object: Chalice, config: Config, *, keyring: Keyring):
        super().__init__(app_object, config)
        self._keyring = keyring

    def _generate_lambda_event(self, method: str, path: str, headers: dict[str, str], body: Any) -> dict[str, Any]:
        event = super()._generate_lambda_event(method, path, headers, body)
        entry = self._app_object.routes[event["requestContext"]["resourcePath"]].get(method)
        if entry is not None and entry.api_key_required:
            value = event["headers"].get("x-api-key")
            key_id = self._keyring.admit(value)
            event["requestContext"]["identity"].update(apiKeyId=key_id, apiKey=value)
        return event
