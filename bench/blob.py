"""`bench-blob`: a job type whose result is a string of `bytes` characters, for the results benchmark.

Named in the benchmark's JOB_TYPES as a deployment names its own types; never deployed.
"""

from __future__ import annotations

from chalicelib.jobs import JobType, Step


class Blob(JobType):
    name = "bench-blob"
    payload_schema = {
        "type": "object",
        "required": ["bytes"],
        "properties": {"bytes": {"type": "integer", "minimum": 0}},
    }

    def step(self, payload, state, ctx):
        return Step(state=None, done=1, total=1, finished=True)

    def finish(self, payload, state, ctx):
        return {"blob": "x" * payload["bytes"]}
