"""verify_webhook against deliveries signed by the Standard Webhooks reference package."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from jobs_client import WebhookVerificationError, verify_webhook

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()
BODY = json.dumps({"type": "job.completed", "timestamp": "2026-12-01T23:00:00Z", "data": {"jobId": "01KB"}})


def signed(body: str = BODY, *, secret: str = SECRET, at: datetime | None = None, msg_id: str = "msg_1") -> dict:
    at = at or datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, at, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


def test_a_delivery_signed_by_the_reference_package_verifies_and_gives_its_body():
    assert verify_webhook(signed(), BODY.encode(), SECRET) == json.loads(BODY)


def test_headers_in_any_case_and_one_of_several_signatures_verify():
    headers = {k.title(): v for k, v in signed().items()}
    headers["Webhook-Signature"] = "v1,bm90IGl0 " + headers["Webhook-Signature"]  # rotated secrets: any may match
    assert verify_webhook(headers, BODY, SECRET)["type"] == "job.completed"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace("01KB", "01KC")),  # the body changed
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),  # another id
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b),  # not v1
        lambda h, b: ({**h, "webhook-signature": "garbage"}, b),  # no version
        lambda h, b: ({**h, "webhook-timestamp": "yesterday"}, b),
    ],
    ids=["body", "id", "timestamp", "no-signature", "version", "malformed", "bad-timestamp"],
)
def test_any_change_is_refused(tamper):
    headers, body = tamper(signed(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET)


def test_another_secret_is_refused():
    other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(signed(secret=other), BODY, SECRET)


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_refused(minutes):
    headers = signed(at=datetime.now(UTC) + timedelta(minutes=minutes))
    with pytest.raises(WebhookVerificationError, match="too (old|new)"):
        verify_webhook(headers, BODY, SECRET)
