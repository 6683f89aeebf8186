"""Job types that are not safe to redo, each in its own way: `jobs check-type` must say why."""

from __future__ import annotations

import time

from chalicelib.jobs import JobType, Step


class HiddenCounter(JobType):
    """Keeps how many chunks it ran outside its state: a redone chunk counts twice."""

    name = "hidden-counter"

    def __init__(self):
        self.calls = 0

    def start(self, payload, ctx):
        return {"done": 0}

    def step(self, payload, state, ctx):
        self.calls += 1
        done = state["done"] + 1
        return Step(state={"done": done, "calls": self.calls}, done=done, total=3, finished=done == 3)


class ClockResult(JobType):
    """Puts the time of its last chunk in its result: no two runs agree."""

    name = "clock-result"

    def start(self, payload, ctx):
        return {"done": 0}

    def step(self, payload, state, ctx):
        done = state["done"] + 1
        return Step(state={"done": done}, done=done, total=2, finished=done == 2)

    def finish(self, payload, state, ctx):
        return {"done": state["done"], "at": time.time_ns()}


class SetState(JobType):
    """Keeps a Python set in its state: no checkpoint can hold it."""

    name = "set-state"

    def start(self, payload, ctx):
        return {"seen": set()}

    def step(self, payload, state, ctx):
        return Step(state={"seen": state["seen"] | {1}}, done=1, total=1, finished=True)


class Hoarder(JobType):
    """Keeps everything it made in its state: after a few chunks no checkpoint can hold it."""

    name = "hoarder"

    def start(self, payload, ctx):
        return {"kept": []}

    def step(self, payload, state, ctx):
        kept, steps = state["kept"] + ["x" * payload["bytesPerStep"]], payload["steps"]
        return Step(state={"kept": kept}, done=len(kept), total=steps, finished=len(kept) == steps)
