"""Reading Eureka's JSON answers: no I/O here.

Readers accept a one-element list or a bare object, both spellings of ``overriddenStatus``,
and numbers as strings (docs/eureka.md#lists-array-or-single-object).
"""

from __future__ import annotations

from typing import Any

from agent.registry import InstanceState

OUT_OF_SERVICE = "OUT_OF_SERVICE"
UP = "UP"


def as_list(value: Any) -> list[Any]:
    """Jackson writes arrays; XStream-era servers write a single object.

    See docs/eureka.md#lists-array-or-single-object.
    """
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def port_of(value: Any) -> int | None:
    """``{"$": 8080, "@enabled": "true"}``, or a bare number or string."""
    if isinstance(value, dict):
        value = value.get("$")
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def overridden(instance: dict[str, Any]) -> str | None:
    value = instance.get("overriddenStatus", instance.get("overriddenstatus"))
    return None if value in (None, "", "UNKNOWN") else str(value)


def metadata_of(instance: dict[str, Any]) -> dict[str, str]:
    raw = instance.get("metadata")
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if k != "@class"}


def instances_in(body: Any, app: str | None = None) -> list[dict[str, Any]]:
    """Instances from an ``applications`` or ``application`` envelope (JSON)."""
    if not isinstance(body, dict):
        return []
    if "applications" in body:
        applications = body["applications"]
        # A malformed envelope (``{"applications": [1]}``) lists nothing.
        apps = as_list(applications.get("application")) if isinstance(applications, dict) else []
    else:
        apps = [body.get("application")]
    out: list[dict[str, Any]] = []
    for entry in apps:
        if not isinstance(entry, dict):
            continue
        if app is not None and str(entry.get("name", "")).upper() != app:
            continue
        out += [i for i in as_list(entry.get("instance")) if isinstance(i, dict)]
    return out


def back_up(instance: dict[str, Any]) -> bool:
    """In service with no override of ours left: what ``put_back`` leaves."""
    return str(instance.get("status")) == UP and overridden(instance) is None


def last_entry(body: Any, app: str, instance_id: str) -> dict[str, Any] | None:
    """Our instance as a consumer ends up with: clients apply delta entries in order, so
    the last one wins (an entry from an older lease can still show an older status)."""
    mine = [
        i
        for i in instances_in(body, app)
        if str(i.get("instanceId") or i.get("hostName")) == instance_id
    ]
    return mine[-1] if mine else None


def instance_state(instance: dict[str, Any], ip: str, port: int) -> InstanceState:
    """A live record as the Registry protocol reports it (enabled: status UP); defaults ours."""
    return InstanceState(
        ip=str(instance.get("ipAddr", ip)),
        port=port_of(instance.get("port")) or port,
        cluster="",
        weight=1.0,
        metadata=metadata_of(instance),
        enabled=str(instance.get("status", "")) == UP,
        healthy=None,
    )
