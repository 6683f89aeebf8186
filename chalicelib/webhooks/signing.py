"""Per-client webhook signing secrets in Secrets Manager, and the Standard Webhooks signature.

Each client has one secret, `<WEBHOOK_SECRET_PREFIX><client>` (the client's name as it is where it
is letters, digits, `_` and `-`, other bytes as `.xx`), whose SecretString is `whsec_<base64 of 32
random bytes>`. The deploy and `make run` create one per client of infra/usage-plans.json; a client
without one (a key added since) gets it on first use (`ensure`). Rotation (`rotate`) puts a new
value: Secrets Manager makes it AWSCURRENT and keeps the old one as AWSPREVIOUS, and for
ROTATION_OVERLAP after a rotation deliveries carry both signatures (space-separated, as the
specification provides), so receivers can switch over without losing a delivery.

Values are kept per container for CACHE_SECONDS (a rotation reaches every delivery within it) and
never logged. Signing itself is the `standardwebhooks` package's (stdlib only, imported on first use).
"""

from __future__ import annotations

import base64
import re
import secrets as random_bytes
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import errors

#: How long a container keeps a client's signing keys before reading them again.
CACHE_SECONDS = 300
#: After a rotation, deliveries are signed with the previous secret too for this long.
ROTATION_OVERLAP = timedelta(hours=24)
_SAFE = re.compile(r"[A-Za-z0-9_-]")


def new_secret() -> str:
    """A fresh `whsec_` signing secret (32 random bytes)."""
    return "whsec_" + base64.b64encode(random_bytes.token_bytes(32)).decode()


def secret_name(prefix: str, owner: str) -> str:
    """The Secrets Manager name of the owner's secret (Secrets Manager names allow `A-Za-z0-9/_+=.@-`)."""
    return prefix + "".join(c if _SAFE.fullmatch(c) else "".join(f".{b:02x}" for b in c.encode()) for c in owner)


def sign(keys: list[str], msg_id: str, at: datetime, body: str) -> str:
    """The `webhook-signature` header: `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` per key."""
    import standardwebhooks  # only the delivery function signs: kept off the API's cold start

    return " ".join(standardwebhooks.Webhook(key).sign(msg_id, at, body) for key in keys)


class SigningSecrets:
    """The clients' signing secrets in Secrets Manager (a client made on first use)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._connect = connect
        self._client: Any = None
        self.prefix = prefix
        self._clock = clock
        self._cache: dict[str, tuple[float, list[str]]] = {}

    @property
    def _sm(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def keys(self, owner: str) -> list[str]:
        """The secrets deliveries to the owner are signed with: the current one, and the previous
        one during ROTATION_OVERLAP after a rotation (the secret made if the owner has none)."""
        now = self._clock()
        cached = self._cache.get(owner)
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        name = secret_name(self.prefix, owner)
        current = self._read(name, "AWSCURRENT")
        if current is None:
            keys = [self.ensure(owner)]
        else:
            keys = [current["SecretString"]]
            created = current.get("CreatedDate")
            if isinstance(created, datetime) and datetime.fromtimestamp(now, UTC) - created < ROTATION_OVERLAP:
                previous = self._read(name, "AWSPREVIOUS")
                if previous is not None and previous["SecretString"] != keys[0]:
                    keys.append(previous["SecretString"])
        self._cache[owner] = (now, keys)
        return keys

    def current(self, owner: str) -> str:
        """The owner's current secret (`GET /webhook-secret`), made if it has none."""
        return self.keys(owner)[0]

    def ensure(self, owner: str) -> str:
        """The owner's current secret, created first if there is none (the deploy, `make run`)."""
        name = secret_name(self.prefix, owner)
        found = self._read(name, "AWSCURRENT")
        if found is not None:
            return found["SecretString"]
        value = new_secret()
        try:
            self._sm.create_secret(
                Name=name, SecretString=value, Description=f"webhook signing secret of client {owner}"
            )
            return value
        except Exception as exc:
            if _code(exc) != "ResourceExistsException":  # made meanwhile by another container
                raise errors.DependencyUnavailable(f"Secrets Manager: cannot create {name}: {_code(exc)}") from exc
        found = self._read(name, "AWSCURRENT")
        if found is None:
            raise errors.DependencyUnavailable(f"Secrets Manager: {name} exists but has no value")
        return found["SecretString"]

    def rotate(self, owner: str) -> str:
        """Put a new current secret for the owner (the old one signs too for ROTATION_OVERLAP)."""
        self.ensure(owner)
        value = new_secret()
        name = secret_name(self.prefix, owner)
        try:
            self._sm.put_secret_value(SecretId=name, SecretString=value)
        except Exception as exc:
            raise errors.DependencyUnavailable(f"Secrets Manager: cannot rotate {name}: {_code(exc)}") from exc
        self._cache.pop(owner, None)
        return value

    def _read(self, name: str, stage: str) -> dict[str, Any] | None:
        try:
            return self._sm.get_secret_value(SecretId=name, VersionStage=stage)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise errors.DependencyUnavailable(f"Secrets Manager: cannot read {name}: {_code(exc)}") from exc


def _code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, else the exception's type (never its message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__
