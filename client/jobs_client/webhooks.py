"""Standard Webhooks verification (https://www.standardwebhooks.com/), with the `standardwebhooks` package.

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature` (one or
more space-separated `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` under the secret's bytes,
the base64 after `whsec_`). A timestamp more than five minutes off is refused, so a captured
delivery cannot be replayed later; the `webhook-id` is the same on every retry of one delivery, so a
receiver can drop repeats by it.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

import standardwebhooks
from standardwebhooks.webhooks import EmptyWebhookSecretError

from .errors import WebhookVerificationError


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> Any:
    """The delivery's JSON body once its signature and timestamp verify; WebhookVerificationError
    otherwise (a wrong or missing header, a body changed by one byte, another secret, an old timestamp).
    `body` must be the exact bytes received, before any JSON parsing."""
    try:
        hook = standardwebhooks.Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError) as exc:
        raise ValueError(f"not a webhook signing secret (whsec_<base64>): {exc}") from None
    try:
        return hook.verify(body, {key: value for key, value in headers.items()})
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationError(str(exc)) from None
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        # A signature entry without its "v1," prefix, or not base64; a body that is not UTF-8 JSON.
        raise WebhookVerificationError(f"malformed webhook: {type(exc).__name__}") from None
