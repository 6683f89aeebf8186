"""Who the clients are and what their plans allow: the deployment's tenants document.

The owner of a job is the *client* (a name of infra/usage-plans.json), not its API key: a client
whose key is rotated keeps its jobs, idempotency keys and limits. On AWS, API Gateway tells the
function only the key's id (`identity.apiKeyId`), so the deploy writes, after it binds the keys,
one JSON document naming each client's key ids, plan and job limits (`TENANTS_URL`, an S3 object
of the results bucket; `make run` writes the same document to moto's S3):

    {"clients": {"demo": {"plan": "basic", "keyIds": ["a1b2c3"],
                          "limits": {"maxActiveJobs": 50, "maxRunningJobs": 2, "maxTimeoutSeconds": 3600,
                                     "maxSchedules": 20}}}}

A container reads it on first use and again after `TENANTS_TTL_SECONDS`, or at once (at most every
few seconds) when a key id it does not know calls: a new key works as soon as the deploy wrote it.
Without TENANTS_URL (tests, a bare local run) there are no tenants: the caller is the key (or the
`x-api-key` header where no gateway runs) and nothing is limited.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .objects import ObjectStore

#: Where the tenants document lives in the results bucket (infra/service.yaml's TenantsUrl says the same).
DOCUMENT_KEY = "config/tenants.json"
#: maxSchedules of a plan (and of a tenants document written before plans had it).
DEFAULT_MAX_SCHEDULES = 20
#: A key id nobody knows makes the document be read again, but not more often than this (seconds).
UNKNOWN_KEY_RELOAD_SECONDS = 5


@dataclass(frozen=True)
class Limits:
    """A plan's job limits (infra/usage-plans.json)."""

    #: Jobs not yet finished (PENDING and RUNNING) a client may have at once.
    max_active_jobs: int
    #: Jobs of the client RUNNING at once.
    max_running_jobs: int
    #: The largest timeoutSeconds a job of the client may ask for.
    max_timeout_seconds: int
    #: Recurring schedules (POST /schedules) the client may have at once.
    max_schedules: int = DEFAULT_MAX_SCHEDULES

    def to_json(self) -> dict[str, int]:
        return {
            "maxActiveJobs": self.max_active_jobs,
            "maxRunningJobs": self.max_running_jobs,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "maxSchedules": self.max_schedules,
        }


@dataclass(frozen=True)
class Tenant:
    """One client: its name (the owner of its jobs), its plan and the plan's limits."""

    client: str
    plan: str
    limits: Limits


def document(clients: dict[str, tuple[str, list[str], Limits]]) -> dict[str, Any]:
    """The tenants document of `{client: (plan, key ids, limits)}` (what the deploy writes)."""
    return {
        "clients": {
            name: {"plan": plan, "keyIds": sorted(key_ids), "limits": limits.to_json()}
            for name, (plan, key_ids, limits) in sorted(clients.items())
        }
    }


def parse(raw: Any) -> tuple[dict[str, Tenant], dict[str, str]]:
    """(client -> tenant, key id -> client) of a document; Misconfigured, naming the field, if it is not one."""
    try:
        tenants: dict[str, Tenant] = {}
        keys: dict[str, str] = {}
        for name, spec in raw["clients"].items():
            limits = spec["limits"]
            values = {field: limits[field] for field in ("maxActiveJobs", "maxRunningJobs", "maxTimeoutSeconds")}
            values["maxSchedules"] = limits.get("maxSchedules", DEFAULT_MAX_SCHEDULES)
            for field, value in values.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"clients/{name}/limits/{field} must be an integer of at least 1")
            tenants[name] = Tenant(
                client=name,
                plan=spec["plan"],
                limits=Limits(
                    values["maxActiveJobs"],
                    values["maxRunningJobs"],
                    values["maxTimeoutSeconds"],
                    values["maxSchedules"],
                ),
            )
            for key_id in spec["keyIds"]:
                if keys.setdefault(key_id, name) != name:
                    raise ValueError(f"key id {key_id} is listed for two clients")
        return tenants, keys
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise errors.Misconfigured(f"the tenants document (TENANTS_URL) is not valid: {exc}") from None


def s3_reader(url: str, objects: ObjectStore) -> Callable[[], bytes]:
    """Reads the document at TENANTS_URL (`s3://bucket/key`)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise errors.Misconfigured(f"TENANTS_URL must be s3://bucket/key, got {url!r}")

    def read() -> bytes:
        try:
            return objects.get(bucket, key)
        except (errors.ObjectNotFound, errors.ObjectAccessDenied) as exc:
            raise errors.Misconfigured(f"cannot read the tenants document (TENANTS_URL): {exc.message}") from None

    return read


class Tenants:
    """The tenants document of this deployment, read on first use and cached per container."""

    def __init__(
        self,
        read: Callable[[], bytes] | None,
        *,
        ttl_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, Tenant] = {}
        self._keys: dict[str, str] = {}
        self._loaded_at: float | None = None

    @property
    def configured(self) -> bool:
        """Whether this deployment has tenants (TENANTS_URL); without, owners are keys and nothing is limited."""
        return self._read is not None

    def client_of(self, key_id: str) -> str | None:
        """The client whose key this is, or None if the document does not list it."""
        self._fresh(max_age=self._ttl)
        if key_id not in self._keys:
            self._fresh(max_age=UNKNOWN_KEY_RELOAD_SECONDS)
        return self._keys.get(key_id)

    def of(self, owner: str) -> Tenant | None:
        """The tenant of an owner (a client name), or None: no tenants, or an owner not in the document."""
        if not self.configured:
            return None
        self._fresh(max_age=self._ttl)
        return self._tenants.get(owner)

    def _fresh(self, *, max_age: float) -> None:
        if self._read is None:
            return
        with self._lock:
            now = self._clock()
            if self._loaded_at is not None and now - self._loaded_at < max_age:
                return
            try:
                raw = json.loads(self._read())
            except errors.DependencyUnavailable:
                if self._loaded_at is None:
                    raise  # nothing known yet: the request cannot be answered
                self._loaded_at = now - self._ttl + UNKNOWN_KEY_RELOAD_SECONDS  # keep the last; retry soon
                return
            except ValueError as exc:
                raise errors.Misconfigured(f"the tenants document (TENANTS_URL) is not JSON: {exc}") from None
            self._tenants, self._keys = parse(raw)
            self._loaded_at = now
