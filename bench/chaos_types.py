"""`crash`: the chaos run's crasher, a job type that SIGKILLs the worker process running its chunk
`killAtStep`, on every pass (an out-of-memory or time-limit stand-in). Its batch neighbours are
innocent: they must complete, whatever the crashes do to their batch. Loaded by JOB_TYPES in the
chaos run only (bench/ is never deployed)."""

from __future__ import annotations

import os
import signal

from chalicelib.jobs import JobType, Step


class Crash(JobType):
    name = "crash"
    payload_schema = {"type": "object", "required": ["steps", "killAtStep"]}

    def start(self, payload, ctx):
        return {"done": 0}

    def step(self, payload, state, ctx):
        current = state["done"] + 1
        if current == payload["killAtStep"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return Step(state={"done": current}, done=current, total=payload["steps"], finished=current >= payload["steps"])
