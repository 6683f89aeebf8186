"""Job types: the SDK a team writes its own types against, the registry, and the built-in types.

    from chalicelib.jobs import JobContext, JobType, PermanentFailure, Step

    class Countdown(JobType):
        name = "countdown"
        payload_schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
                          "required": ["n"]}

        def start(self, payload, ctx):
            return {"left": payload["n"]}

        def step(self, payload, state, ctx):
            left = state["left"] - 1
            return Step(state={"left": left}, done=payload["n"] - left, total=payload["n"], finished=left == 0)

Name the module in JOB_TYPES; `jobs check-type module:Countdown --payload '{"n": 3}'` proves it is
safe to redo. README.md, "Write your own job type", walks through it.
"""

from ..errors import InvalidPayload, ObjectNotFound, PermanentFailure
from .registry import BUILTIN_MODULES, JobTypes, types_of
from .sdk import MAX_STATE_BYTES, JobContext, JobType, Objects, Step, read_next

__all__ = [
    "BUILTIN_MODULES",
    "MAX_STATE_BYTES",
    "InvalidPayload",
    "JobContext",
    "JobType",
    "JobTypes",
    "ObjectNotFound",
    "Objects",
    "PermanentFailure",
    "Step",
    "read_next",
    "types_of",
]
