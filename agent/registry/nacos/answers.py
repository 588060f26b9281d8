"""Reading Nacos answers into typed values, and what a write is called: no I/O here.

Every field the adapter reads comes through these functions; an answer that does not hold what
they need is a :class:`~agent.exceptions.RegistryRejected` (a weight we would write back) or
a :class:`~agent.exceptions.RegistryError`, never a crash.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from agent.consumers import Subscriber
from agent.exceptions import RegistryError, RegistryRejected, json_of
from agent.registry import InstanceState

_BODY_SNIPPET = 200


def snippet(response: httpx.Response) -> str:
    """The start of an answer's body on one line, for error messages."""
    try:
        text = response.text.strip().replace("\n", " ")
    except (ValueError, LookupError, httpx.HTTPError):
        return "(unreadable body)"
    return text[:_BODY_SNIPPET]


def major_of(version: str) -> int | None:
    """The major version of a version string such as ``2.3.1`` or ``v3.0.0-BETA``."""
    head = version.strip().lstrip("vV").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def ok_json(r: httpx.Response, what: str) -> Any:
    """The answer's JSON; a 4xx or an unreadable body is :class:`RegistryRejected`."""
    if r.status_code >= 400:
        raise RegistryRejected(f"{what} -> HTTP {r.status_code}: {snippet(r)}")
    try:
        return json_of(r)
    except ValueError as exc:
        raise RegistryRejected(f"{what} answered {exc}: {snippet(r)[:80]}") from None


def instance_state(data: dict[str, Any], ip: str, port: int, cluster: str) -> InstanceState:
    """An instance record (1.x/2.x ``/v1/ns/instance``, 3.x ``data``); the defaults are ours."""
    metadata = data.get("metadata") or {}
    return InstanceState(
        ip=str(data.get("ip", ip)),
        port=to_int(data.get("port")) or port,
        cluster=str(data.get("clusterName") or cluster),
        weight=weight_of(data.get("weight", 1.0)),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else {},
        enabled=opt_bool(data.get("enabled")),
        healthy=opt_bool(data.get("healthy")),
        ephemeral=opt_bool(data.get("ephemeral")),
    )


def subscribers_of(page: Any, key: str, what: str) -> list[Subscriber]:
    """The subscribers on one page of a subscriber list; an incomplete list is an error."""
    items = page.get(key) if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise RegistryError(f"{what}: no {key} list in the answer")
    total = page.get("totalCount", page.get("count")) if isinstance(page, dict) else None
    if isinstance(total, int) and total > len(items):
        # More than one page: the list would be incomplete, and knowledge must be whole.
        raise RegistryError(f"{what}: {total} subscribers, more than one page")
    out: list[Subscriber] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        ip, port = item.get("ip"), item.get("port")
        if not ip and isinstance(item.get("address") or item.get("addrStr"), str):
            ip, _, port = str(item.get("address") or item.get("addrStr")).rpartition(":")
        if ip:
            agent = item.get("agent")
            out.append(
                Subscriber(
                    str(item.get("clientId", "")),
                    str(ip),
                    to_int(port) or 0,
                    agent if isinstance(agent, str) else "",
                )
            )
    return out


def write_method(major: int) -> str:
    """The call that writes an instance on this major version (as logged and reported)."""
    if major >= 3:
        return "PUT /v3/admin/ns/instance/partial"
    return "PATCH /v1/ns/instance" if major == 2 else "PUT /v1/ns/instance"


def metadata_kept(before: dict[str, str], after: dict[str, str]) -> bool:
    return all(after.get(k) == v for k, v in before.items())


def weight_of(value: object) -> float:
    """A weight as Nacos writes it (a number, or a numeric string); anything else is refused,
    because the take-out writes the weight back."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            weight = float(value)
        except (ValueError, OverflowError):
            weight = math.nan
        if math.isfinite(weight) and weight >= 0:
            return weight
    raise RegistryRejected(f"the instance's weight is not a number: {str(value)[:40]!r}")


def to_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def opt_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None
