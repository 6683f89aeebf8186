"""The API Gateway emulation's rules, with a clock the test controls: keys, token bucket, quotas."""

from datetime import UTC, datetime

import pytest
from chalice.local import ForbiddenError

from infra.usage_plans import parse
from local.gateway import Keyring, TooManyRequestsError, quota_period

JOB_LIMITS = {"maxActiveJobs": 1000, "maxRunningJobs": 100, "maxTimeoutSeconds": 604800}
PLANS = parse(
    {
        "plans": {
            "slow": {"rateLimit": 2, "burstLimit": 3, "quota": None, **JOB_LIMITS},
            "daily": {"rateLimit": 100, "burstLimit": 100, "quota": {"limit": 2, "period": "DAY"}, **JOB_LIMITS},
        },
        "clients": {
            "alice": {"plan": "slow"},
            "dora": {"plan": "daily"},
            "gone": {"plan": "slow", "enabled": False, "value": "a-disabled-key-00000000"},
        },
    }
)


class Clock:
    def __init__(self):
        self.now = 0.0
        self.day = datetime(2026, 11, 23, 23, 59, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def keyring(clock):
    return Keyring(PLANS, clock=clock, now=lambda: clock.day)


def test_a_known_key_passes_as_its_client(keyring):
    assert keyring.admit("alice-local-key") == "alice"


@pytest.mark.parametrize("value", [None, "", "nobody-local-key", "a-disabled-key-00000000"])
def test_missing_unknown_and_disabled_keys_are_forbidden(keyring, value):
    with pytest.raises(ForbiddenError) as refused:
        keyring.admit(value)
    assert refused.value.body == b'{"message":"Forbidden"}'


def test_the_bucket_holds_the_burst_and_refills_at_the_rate(keyring, clock):
    assert [keyring.admit("alice-local-key") for _ in range(3)] == ["alice"] * 3
    with pytest.raises(TooManyRequestsError) as throttled:
        keyring.admit("alice-local-key")
    assert throttled.value.body == b'{"message":"Too Many Requests"}'
    clock.now += 0.5  # 2 a second: one token back
    assert keyring.admit("alice-local-key") == "alice"
    with pytest.raises(TooManyRequestsError):
        keyring.admit("alice-local-key")
    clock.now += 60  # never more than the burst
    assert [keyring.admit("alice-local-key") for _ in range(3)] == ["alice"] * 3
    with pytest.raises(TooManyRequestsError):
        keyring.admit("alice-local-key")


def test_a_quota_is_used_up_then_restarts_with_the_next_period(keyring, clock):
    keyring.admit("dora-local-key")
    keyring.admit("dora-local-key")
    with pytest.raises(TooManyRequestsError) as exceeded:
        keyring.admit("dora-local-key")
    assert exceeded.value.body == b'{"message":"Limit Exceeded"}'
    clock.day = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # midnight UTC
    assert keyring.admit("dora-local-key") == "dora"


def test_quota_periods_start_at_utc_boundaries():
    monday = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert quota_period("DAY", monday) == "2026-11-23"
    assert quota_period("WEEK", monday) == quota_period("WEEK", datetime(2026, 11, 29, 23, 59, tzinfo=UTC))
    assert quota_period("WEEK", monday) != quota_period("WEEK", datetime(2026, 11, 30, tzinfo=UTC))
    assert quota_period("MONTH", monday) == "2026-11"
