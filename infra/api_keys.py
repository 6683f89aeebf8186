"""Make API Gateway's usage plans and API keys match infra/usage-plans.json, bound to one REST API stage.

Names carry a prefix per deployment (`jobs-<stage>-`), so each stage owns its plans and keys and
`unbind` removes exactly those. Repeating `bind` changes nothing that already matches; a key keeps
its value across deploys (clients keep working), and a plan keeps its quota counters.
"""

from __future__ import annotations

from typing import Any

from infra.usage_plans import Plan, UsagePlans


def bind(apigw: Any, plans: UsagePlans, *, prefix: str, rest_api_id: str, stage: str) -> dict[str, str]:
    """Create or update the plans and keys and bind the plans to the stage; returns {client: key id}."""
    api_stage = {"apiId": rest_api_id, "stage": stage}
    existing_plans = _by_name(_usage_plans(apigw), prefix)
    existing_keys = _by_name(_api_keys(apigw, prefix), prefix)
    for name, plan in existing_plans.items():
        if name not in plans.plans:
            _delete_plan(apigw, plan)
    key_ids = {
        name: _ensure_key(apigw, existing_keys.get(name), client, prefix) for name, client in plans.clients.items()
    }
    for name, key in existing_keys.items():
        if name not in plans.clients:
            _delete_key_everywhere(apigw, key["id"])
    plan_ids = {
        name: _ensure_plan(apigw, existing_plans.get(name), plan, prefix, api_stage)
        for name, plan in plans.plans.items()
    }
    # Removals before additions: API Gateway refuses a key in two plans of the same stage.
    wanted: dict[str, set[str]] = {pid: set() for pid in plan_ids.values()}
    for client in plans.clients.values():
        wanted[plan_ids[client.plan]].add(key_ids[client.name])
    current = {pid: {k["id"] for k in _paged(apigw.get_usage_plan_keys, "items", usagePlanId=pid)} for pid in wanted}
    for pid, key_set in current.items():
        for key_id in key_set - wanted[pid]:
            apigw.delete_usage_plan_key(usagePlanId=pid, keyId=key_id)
    for pid, key_set in wanted.items():
        for key_id in key_set - current[pid]:
            apigw.create_usage_plan_key(usagePlanId=pid, keyId=key_id, keyType="API_KEY")
    return key_ids


def unbind(apigw: Any, *, prefix: str) -> None:
    """Delete this deployment's usage plans (after unbinding their stages) and its API keys."""
    for plan in _by_name(_usage_plans(apigw), prefix).values():
        _delete_plan(apigw, plan)
    for key in _by_name(_api_keys(apigw, prefix), prefix).values():
        apigw.delete_api_key(apiKey=key["id"])


def _ensure_plan(apigw: Any, current: dict | None, plan: Plan, prefix: str, api_stage: dict) -> str:
    throttle = {"rateLimit": float(plan.rate_limit), "burstLimit": plan.burst_limit}
    quota = {"limit": plan.quota.limit, "period": plan.quota.period} if plan.quota else None
    if current is None:
        created = apigw.create_usage_plan(
            name=prefix + plan.name,
            description=plan.description,
            apiStages=[api_stage],
            throttle=throttle,
            **({"quota": quota} if quota else {}),
        )
        return created["id"]
    ops = [
        {"op": "replace", "path": "/description", "value": plan.description},
        {"op": "replace", "path": "/throttle/rateLimit", "value": _number(plan.rate_limit)},
        {"op": "replace", "path": "/throttle/burstLimit", "value": str(throttle["burstLimit"])},
    ]
    if quota:
        ops += [
            {"op": "replace", "path": "/quota/limit", "value": str(quota["limit"])},
            {"op": "replace", "path": "/quota/period", "value": quota["period"]},
        ]
    elif current.get("quota"):
        ops.append({"op": "remove", "path": "/quota"})
    bound = {(s["apiId"], s["stage"]) for s in current.get("apiStages", [])}
    if (api_stage["apiId"], api_stage["stage"]) not in bound:
        ops.append({"op": "add", "path": "/apiStages", "value": f"{api_stage['apiId']}:{api_stage['stage']}"})
    apigw.update_usage_plan(usagePlanId=current["id"], patchOperations=ops)
    return current["id"]


def _ensure_key(apigw: Any, current: dict | None, client, prefix: str) -> str:
    if current is None:
        extra = {"value": client.value} if client.value else {}
        return apigw.create_api_key(
            name=prefix + client.name, enabled=client.enabled, description=f"jobs client {client.name}", **extra
        )["id"]
    if current.get("enabled") != client.enabled:
        apigw.update_api_key(
            apiKey=current["id"],
            patchOperations=[{"op": "replace", "path": "/enabled", "value": str(client.enabled).lower()}],
        )
    return current["id"]


def _number(value: float) -> str:
    """5 -> "5", 0.5 -> "0.5" (moto parses rateLimit patches with int(), and "5.0" would break it)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _delete_plan(apigw: Any, plan: dict) -> None:
    # A plan bound to a stage cannot be deleted, and a bound REST API cannot be deleted either.
    stages = [f"{s['apiId']}:{s['stage']}" for s in plan.get("apiStages", [])]
    if stages:
        apigw.update_usage_plan(
            usagePlanId=plan["id"],
            patchOperations=[{"op": "remove", "path": "/apiStages", "value": value} for value in stages],
        )
    apigw.delete_usage_plan(usagePlanId=plan["id"])


def _delete_key_everywhere(apigw: Any, key_id: str) -> None:
    for plan in apigw.get_usage_plans(keyId=key_id).get("items", []):
        apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key_id)
    apigw.delete_api_key(apiKey=key_id)


def _usage_plans(apigw: Any) -> list[dict]:
    return _paged(apigw.get_usage_plans, "items")


def _api_keys(apigw: Any, prefix: str) -> list[dict]:
    return _paged(apigw.get_api_keys, "items", nameQuery=prefix)


def _by_name(items: list[dict], prefix: str) -> dict[str, dict]:
    """Items whose name starts with `prefix`, keyed by the rest of the name."""
    return {item["name"][len(prefix) :]: item for item in items if item.get("name", "").startswith(prefix)}


def _paged(call, field: str, **kwargs) -> list[dict]:
    items, position = [], None
    while True:
        page = call(**kwargs, **({"position": position} if position else {}))
        items += page.get(field, [])
        position = page.get("position")
        if not position:
            return items
