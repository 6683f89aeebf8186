"""`sleep`: waits `stepMs` per chunk for `steps` chunks. For demos, load tests and fault tests."""
from __future__ import annotations

import time
from typing import Any

from .. import errors
from . import Step, register

MAX_STEPS = 100_000
MAX_STEP_MS = 60_000


class StepFailed(Exception):
    """The failure a `sleep` job was asked to simulate with `failAtStep`."""


def _int_field(payload: dict[str, Any], name: str, *, low: int, high: int, default: int | None = None) -> int | None:
    value = payload.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.InvalidPayload(f"payload.{name} must be an integer from {low} to {high}")
    return value


class Sleep:
    name = "sleep"

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = set(payload) - {"steps", "stepMs", "failAtStep"}
        if unknown:
            raise errors.InvalidPayload(f"unknown payload fields: {', '.join(sorted(unknown))}")
        steps = _int_field(payload, "steps", low=1, high=MAX_STEPS, default=10)
        clean = {"steps": steps, "stepMs": _int_field(payload, "stepMs", low=0, high=MAX_STEP_MS, default=100)}
        fail_at = _int_field(payload, "failAtStep", low=1, high=steps)
        if fail_at is not None:
            clean["failAtStep"] = fail_at
        return clean

    def start(self, payload: dict[str, Any]) -> dict[str, int]:
        return {"done": 0}

    def step(self, payload: dict[str, Any], state: dict[str, int]) -> Step:
        current = state["done"] + 1
        time.sleep(payload["stepMs"] / 1000)
        if payload.get("failAtStep") == current:
            raise StepFailed(f"failed at step {current} as the payload asked")
        steps = payload["steps"]
        return Step(state={"done": current}, done=current, total=steps, finished=current >= steps,
                    stage="sleeping", message=f"step {current} of {steps}")

    def finish(self, payload: dict[str, Any], state: dict[str, int]) -> dict[str, int]:
        return {"steps": state["done"], "sleptMs": state["done"] * payload["stepMs"]}

    def chunk_seconds(self, payload: dict[str, Any]) -> float:
        return payload["stepMs"] / 1000


register(Sleep())
