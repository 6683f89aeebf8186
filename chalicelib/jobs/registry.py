"""The job types of a deployment: the built-ins and the modules JOB_TYPES names, imported once.

The runtime builds one `JobTypes` while it wires itself and hands it to the service, the worker and
the OpenAPI document; nothing looks types up in a global. A module that does not import, a module
that defines no type and two types with one name are `errors.Misconfigured`, naming the module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from .. import errors
from .sdk import JobContext, JobType

#: Always part of a deployment, before the modules of JOB_TYPES.
BUILTIN_MODULES = ("chalicelib.jobs.sleep", "chalicelib.jobs.csv_stats", "chalicelib.jobs.word_frequency")


class JobTypes:
    """Job types by name, and the payload check POST /jobs and the worker share."""

    def __init__(self, types: Iterable[JobType]):
        self._types: dict[str, JobType] = {}
        for job_type in types:
            self._add(job_type, where=type(job_type).__module__)
        self._validators: dict[str, Any] = {}

    @classmethod
    def load(cls, modules: Iterable[str] = ()) -> JobTypes:
        """The built-ins and every type of each named module (importable names, e.g. `acme.jobtypes`)."""
        registry = cls(())
        for module_name in dict.fromkeys((*BUILTIN_MODULES, *modules)):
            found = types_of(load_module(module_name))
            if not found:
                raise errors.Misconfigured(
                    f"JOB_TYPES: module {module_name!r} defines no job type "
                    "(a subclass of chalicelib.jobs.JobType with a name)"
                )
            for job_type in found:
                registry._add(job_type, where=module_name)
        return registry

    def _add(self, job_type: JobType, *, where: str) -> None:
        if not isinstance(job_type.name, str) or not job_type.name:
            raise errors.Misconfigured(f"JOB_TYPES: a job type of {where!r} has no name")
        other = self._types.get(job_type.name)
        if other is not None:
            raise errors.Misconfigured(
                f"JOB_TYPES: two job types are named {job_type.name!r}: "
                f"{type(other).__module__}.{type(other).__qualname__} and "
                f"{where}.{type(job_type).__qualname__}"
            )
        self._types[job_type.name] = job_type

    def get(self, name: Any) -> JobType:
        """The job type of that name, or errors.UnknownJobType."""
        try:
            return self._types[name]
        except (KeyError, TypeError):
            known = ", ".join(self.names())
            raise errors.UnknownJobType(f"unknown job type {str(name)[:64]!r}; known types: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def check_payload(self, job_type: JobType, payload: Any, ctx: JobContext) -> dict[str, Any]:
        """The payload checked against the type's schema (defaults filled in), then by the type itself."""
        import fastjsonschema  # 13 ms of imports: only paths that take payloads pay for them

        validator = self._validators.get(job_type.name)
        if validator is None:
            validator = self._validators[job_type.name] = fastjsonschema.compile(job_type.payload_schema)
        try:
            clean = validator(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise errors.InvalidPayload(exc.message.replace("data", "payload", 1)) from None
        return job_type.validate(clean, ctx)


def types_of(module: ModuleType) -> list[JobType]:
    """One instance of each concrete JobType subclass the module defines (not those it imports)."""
    return [
        cls()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, JobType) and cls.__module__ == module.__name__ and cls.name
    ]


def load_module(module_name: str) -> ModuleType:
    """The module, imported; errors.Misconfigured naming it when it is missing or fails to import."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise errors.Misconfigured(f"JOB_TYPES: no module named {module_name!r}") from exc
        raise errors.Misconfigured(f"JOB_TYPES: module {module_name!r} failed to import: {exc}") from exc
    except Exception as exc:  # whatever the user's module raised while importing
        raise errors.Misconfigured(
            f"JOB_TYPES: module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
