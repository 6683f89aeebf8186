"""The one definition of API keys and usage plans (infra/usage-plans.json): load and validate it.

infra/deploy.py turns it into API Gateway usage plans and keys; the local gateway reads the same file
to apply the same limits. Nothing here talks to AWS, so importing it costs only json and jsonschema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PATH = HERE / "usage-plans.json"
SCHEMA_PATH = HERE / "usage-plans.schema.json"


class UsagePlanError(ValueError):
    """The definition file is not valid; the message says where and why."""


@dataclass(frozen=True)
class Quota:
    limit: int
    #: "DAY", "WEEK" or "MONTH" (API Gateway's periods; they restart at 00:00 UTC).
    period: str


@dataclass(frozen=True)
class Plan:
    name: str
    #: Steady requests per second (token refill rate).
    rate_limit: float
    #: Requests allowed at once (token bucket size).
    burst_limit: int
    quota: Quota | None
    #: The job limits (chalicelib/tenants.py): unfinished jobs, running jobs, the largest timeoutSeconds.
    max_active_jobs: int
    max_running_jobs: int
    max_timeout_seconds: int
    description: str = ""
    #: Recurring schedules a client may have at once (optional in the file: tenants.DEFAULT_MAX_SCHEDULES).
    max_schedules: int = 20


@dataclass(frozen=True)
class Client:
    name: str
    plan: str
    enabled: bool = True
    #: The key itself, or None to let API Gateway generate it.
    value: str | None = None


@dataclass(frozen=True)
class UsagePlans:
    plans: dict[str, Plan]
    clients: dict[str, Client]

    def clients_of(self, plan: str) -> list[Client]:
        """The clients on `plan`, in name order."""
        return sorted((c for c in self.clients.values() if c.plan == plan), key=lambda c: c.name)


def load(path: str | Path = DEFAULT_PATH) -> UsagePlans:
    """Read, schema-check and cross-check the definition file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(), object_pairs_hook=_refuse_duplicate_names)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsagePlanError(f"{path}: {exc}") from exc
    return parse(raw, source=str(path))


def parse(raw: object, *, source: str = "usage plans") -> UsagePlans:
    """Validate an already decoded definition against the schema and build it."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise UsagePlanError(f"{source}: {where}: {errors[0].message}")
    plans = {name: _plan(name, spec) for name, spec in raw["plans"].items()}
    clients = {
        name: Client(name=name, plan=spec["plan"], enabled=spec.get("enabled", True), value=spec.get("value"))
        for name, spec in raw["clients"].items()
    }
    for client in clients.values():
        if client.plan not in plans:
            raise UsagePlanError(f"{source}: clients/{client.name}/plan: no plan named {client.plan!r}")
    return UsagePlans(plans=plans, clients=clients)


def tenants_document(plans: UsagePlans, key_ids: dict[str, list[str]]) -> dict:
    """The tenants document (chalicelib/tenants.py) of these clients, each with its API key ids."""
    from chalicelib import tenants

    clients = {}
    for client in plans.clients.values():
        plan = plans.plans[client.plan]
        limits = tenants.Limits(
            plan.max_active_jobs, plan.max_running_jobs, plan.max_timeout_seconds, plan.max_schedules
        )
        clients[client.name] = (plan.name, key_ids.get(client.name, []), limits)
    return tenants.document(clients)


def _plan(name: str, spec: dict) -> Plan:
    quota = spec["quota"]
    return Plan(
        name=name,
        rate_limit=spec["rateLimit"],
        burst_limit=spec["burstLimit"],
        quota=Quota(limit=quota["limit"], period=quota["period"]) if quota else None,
        max_active_jobs=spec["maxActiveJobs"],
        max_running_jobs=spec["maxRunningJobs"],
        max_timeout_seconds=spec["maxTimeoutSeconds"],
        max_schedules=spec.get("maxSchedules", Plan.max_schedules),
        description=spec.get("description", ""),
    )


def _refuse_duplicate_names(pairs: list[tuple[str, object]]) -> dict:
    # json.loads would keep the last of two equal keys silently: a second "demo" client would vanish.
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise UsagePlanError(f"duplicate name {key!r}")
        seen[key] = value
    return seen
