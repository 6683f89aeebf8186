"""`sleep`: waits `stepMs` per chunk for `steps` chunks. For demos, load tests and fault tests."""

from __future__ import annotations

import time
from typing import Any

from chalicelib.jobs import JobContext, JobType, Step

MAX_STEPS = 100_000
MAX_STEP_MS = 60_000


class StepFailed(Exception):
    """The failure a `sleep` job was asked to simulate with `failAtStep`."""


class Sleep(JobType):
    name = "sleep"
    payload_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "steps": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_STEPS,
                "default": 10,
                "description": "how many chunks the job has",
            },
            "stepMs": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_STEP_MS,
                "default": 100,
                "description": "milliseconds each chunk sleeps",
            },
            "failAtStep": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_STEPS,
                "description": "this step raises, for tests (past `steps`: never)",
            },
        },
    }

    def validate(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {name: int(value) for name, value in payload.items()}  # JSON Schema lets 2.0 be an integer

    def start(self, payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        return {"done": 0}

    def step(self, payload: dict[str, Any], state: dict[str, int], ctx: JobContext) -> Step:
        current = state["done"] + 1
        if payload["stepMs"]:  # 0: a no-op chunk, as the benchmarks' RQ and Celery tasks are (no system call)
            time.sleep(payload["stepMs"] / 1000)
        if payload.get("failAtStep") == current:
            raise StepFailed(f"failed at step {current} as the payload asked")
        steps = payload["steps"]
        return Step(
            state={"done": current},
            done=current,
            total=steps,
            finished=current >= steps,
            stage="sleeping",
            message=f"step {current} of {steps}",
        )

    def finish(self, payload: dict[str, Any], state: dict[str, int], ctx: JobContext) -> dict[str, int]:
        return {"steps": state["done"], "sleptMs": state["done"] * payload["stepMs"]}

    def chunk_seconds(self, payload: dict[str, Any]) -> float:
        return payload["stepMs"] / 1000
