"""`probe`: a test job type that records every chunk it starts, so tests can count chunk executions.

The tests' settings name this module in JOB_TYPES, as a deployment names its own types.

Payload: tag (names the record), steps, stepMs; failAtStep (raises there, on every pass, or only
on the first `failTimes` passes); crashAtStep (SimulatedCrash on the first pass only, or on every
pass with crashAlways); killAtStep (the process kills itself with SIGKILL there, on every pass: an
out-of-memory or time-limit stand-in, for worker processes only); gateAtStep (the first pass waits
until the test opens `Probe.gates[tag]`); resultBytes (size of the result); stateBytes (from step
stateAtStep on, the state carries that many bytes more: a checkpoint over the ceiling). The state carries a
running sum and which pass of its step produced it, so a result tells which run wrote it.

Chunk starts are kept in memory (`Probe.started`) and, when PROBE_LOG names a directory, appended
to `<dir>/<tag>` as "pid step" lines, so tests can count the chunks of worker processes too.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from chalicelib.jobs import JobType, Step


class SimulatedCrash(BaseException):
    """Ends a worker like SIGKILL would: no `except Exception` in the worker catches it."""


class Probe(JobType):
    name = "probe"
    payload_schema = {"type": "object", "required": ["tag", "steps"]}
    #: tag -> the step numbers started in this process, in order
    started: dict[str, list[int]] = {}
    #: tag -> the event a gated step waits for
    gates: dict[str, threading.Event] = {}

    def start(self, payload, ctx):
        return {"done": 0, "sum": 0, "pass": 0}

    def step(self, payload, state, ctx):
        tag, current = payload["tag"], state["done"] + 1
        self.started.setdefault(tag, []).append(current)
        _log(tag, current)
        passes = self.started[tag].count(current)
        time.sleep(payload.get("stepMs", 0) / 1000)
        if payload.get("gateAtStep") == current and passes == 1:
            self.gates.setdefault(tag, threading.Event()).wait(30)
        if payload.get("failAtStep") == current and passes <= payload.get("failTimes", 10**6):
            raise RuntimeError(f"probe failed at step {current}")
        if payload.get("killAtStep") == current:
            os.kill(os.getpid(), signal.SIGKILL)
        if payload.get("crashAtStep") == current and (passes == 1 or payload.get("crashAlways")):
            raise SimulatedCrash(f"crash in step {current}")
        steps = payload["steps"]
        grown = current >= payload.get("stateAtStep", steps + 1)
        return Step(
            state={"done": current, "sum": state["sum"] + current, "pass": passes}
            | ({"pad": "x" * payload["stateBytes"]} if grown else {}),
            done=current,
            total=steps,
            finished=current >= steps,
            stage="probing",
        )

    def finish(self, payload, state, ctx):
        return {
            "done": state["done"],
            "sum": state["sum"],
            "lastPass": state["pass"],
            "blob": "x" * payload.get("resultBytes", 0),
        }


def _log(tag: str, step: int) -> None:
    directory = os.environ.get("PROBE_LOG")
    if directory:
        with open(Path(directory) / tag, "a") as out:  # one short O_APPEND write: atomic
            out.write(f"{os.getpid()} {step}\n")


def logged_steps(directory: Path, tag: str) -> list[tuple[int, int]]:
    """(pid, step) of every chunk started under PROBE_LOG=directory, in order."""
    path = Path(directory) / tag
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


class Paced(JobType):
    """`paced`: counts `bytes` in chunks of `chunkBytes`, each taking `stepMs`: progress in bytes, for ETAs."""

    name = "paced"
    payload_schema = {"type": "object", "required": ["bytes", "chunkBytes", "stepMs"]}

    def start(self, payload, ctx):
        return {"offset": 0}

    def step(self, payload, state, ctx):
        time.sleep(payload["stepMs"] / 1000)
        offset = min(payload["bytes"], state["offset"] + payload["chunkBytes"])
        return Step(state={"offset": offset}, done=offset, total=payload["bytes"], finished=offset >= payload["bytes"])


class Solo(Probe):
    """`solo`: the probe, of which at most one job runs at a time, whoever's (max_concurrency)."""

    name = "solo"
    max_concurrency = 1


class Gather(JobType):
    """`gather`: a fan-in (a batch's `then`) that sums its dependencies' results, two a chunk, and
    lists which it saw and which had not completed."""

    name = "gather"

    def start(self, payload, ctx):
        return {"after": None, "sum": 0, "seen": [], "failed": []}

    def step(self, payload, state, ctx):
        page = ctx.dependency_results(after=state["after"], limit=2)
        if not page:
            return Step(state=state, done=len(state["seen"]), finished=True)
        for item in page:
            state["seen"].append(item["jobId"])
            if item["status"] == "COMPLETED":
                state["sum"] += item["result"]["sum"]
            else:
                state["failed"].append(item["jobId"])
        return Step(state={**state, "after": page[-1]["jobId"]}, done=len(state["seen"]))
