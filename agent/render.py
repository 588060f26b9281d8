"""What ``drain --dry-run``, ``status``, ``up`` and ``down`` print on stdout, for people and for jq.

Each command builds one JSON-safe dict (the ``--json`` form, also used when stdout is not a
terminal) and renders the same dict as a few short lines for a terminal. Logs stay on stderr;
nothing here logs. The dry-run plan does the budget arithmetic of ``prestop check`` offline
(:func:`agent.check.grace_needs`), so the plan never promises what the budget cannot hold.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, TextIO

from agent.check import GRACE_MARGIN, grace_needs
from agent.config import Config, NacosSettings
from agent.registry import TakeOut


def stdout_is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def dumps(obj: dict[str, Any]) -> str:
    """One JSON object on one line (NaN never appears: every number here is finite)."""
    return json.dumps(obj, sort_keys=False, default=str)


# --- the budget arithmetic, shared by the dry run and drain's start-up warning ---


def budget_below_plan(config: Config) -> dict[str, Any] | None:
    """The numbers behind ``check``'s budget finding when ``--budget`` is short, else None."""
    needs = grace_needs(config)
    if config.budget >= needs.budget:
        return None
    return {
        "budget_s": config.budget,
        "needs_s": round(needs.budget, 1),
        "consumer_staleness_s": needs.staleness,
        "quiet_window_s": round(needs.quiet, 1),
        "shutdown_s": needs.shutdown,
        "margin_s": needs.margin,
        "use_budget": needs.suggested_budget,
        "use_grace": max(needs.suggested_grace, math.ceil(config.budget + GRACE_MARGIN)),
        "explain": needs.explain(),
    }


def budget_warning_text(short: dict[str, Any]) -> str:
    return (
        f"--budget {short['budget_s']:g} s is short of {short['explain']}: consumers may still "
        f"route to the app when it stops; use --budget {short['use_budget']} and "
        f"terminationGracePeriodSeconds: {short['use_grace']} (or set --consumer-staleness "
        "to what your consumers' caches really hold)"
    )


# --- drain --dry-run ---


def _signals_text(config: Config) -> str:
    names = set(config.signals)
    parts: list[str] = []
    if "auto" in names:
        parts.append(f"Prometheus {config.metrics_url}, else {config.actuator_url}/metrics")
    if "prometheus" in names:
        parts.append(f"Prometheus {config.metrics_url}")
    if "actuator" in names:
        parts.append(f"{config.actuator_url}/metrics")
    if names & {"auto", "kernel"}:
        parts.append(f"the kernel's sockets on port {config.port}")
    return " + ".join(parts)


def _window_text(config: Config) -> str:
    if config.quiet_window is not None:
        return f"{config.quiet_window:g} s"
    return (
        f"ln(1/{config.confidence:g})/rate s, {config.quiet_floor:g}-{config.quiet_cap:g} s "
        f"({math.log(1 / config.confidence):.1f} s at 1 req/s)"
    )


def _registry_text(config: Config) -> tuple[str, str, str]:
    """Where, what and how the take-out writes."""
    servers = ", ".join(str(s) for s in config.target.servers)  # str() shows no credentials
    if config.registry == "eureka":
        return (
            f"eureka at {servers}",
            f"app {config.service}",
            "set OUT_OF_SERVICE on every server; cancel the lease once the app has stopped",
        )
    assert isinstance(config.target, NacosSettings)
    return (
        f"nacos at {servers}",
        f"{config.target.group}@@{config.service} (namespace {config.target.namespace})",
        "set enabled=false (weight and metadata kept)",
    )


def _shutdown_text(config: Config) -> str:
    closes = f"then wait up to {config.shutdown_timeout:g} s for port {config.port} to close"
    if config.shutdown == "actuator":
        return f"POST {config.actuator_url}/shutdown, {closes}"
    if config.shutdown == "signal":
        return f"SIGTERM to {config.signal_target!r}, {closes}"
    return "nothing (--shutdown none): kubelet's SIGTERM stops the app after the hook"


def _steps(config: Config, drain_ends_by: float) -> list[str]:
    """The plan as the ``dry_run_plan`` log line has always listed it."""
    servers = ", ".join(str(s) for s in config.target.servers)
    if config.registry == "eureka":
        take_out = (
            f"set {config.instance} of app {config.service} OUT_OF_SERVICE on {servers}; "
            "cancel the lease there once the app has stopped"
        )
    else:
        assert isinstance(config.target, NacosSettings)
        take_out = (
            f"take {config.instance} out of {config.target.group}@@{config.service} on "
            f"{servers} (enabled=false)"
        )
    window = (
        f"{config.quiet_window:g}s "
        if config.quiet_window is not None
        else f"ln(1/{config.confidence:g})/rate s [{config.quiet_floor:g}..{config.quiet_cap:g}] "
    )
    end = min(config.max_wait, drain_ends_by)
    return [
        take_out,
        "confirm consumers' instance list no longer has it",
        f"drain: sample {config.metrics_url} until quiet for {window}"
        f"(min {config.min_wait:g}s, max {config.max_wait:g}s"
        + (f", cut to {end:g}s by the budget)" if end < config.max_wait else ")"),
        f"shut down: {config.shutdown}"
        + (f" ({config.actuator_url}/shutdown)" if config.shutdown == "actuator" else ""),
        f"all within {config.budget:g}s: the drain ends by {drain_ends_by:g}s, "
        f"{config.shutdown_timeout:g}s are kept for the shutdown",
    ]


def drain_plan(config: Config) -> dict[str, Any]:
    """The dry run's plan: what each step would do, the time it has, and what cannot fit."""
    from agent.deadline import EXIT_MARGIN

    registry, service, write = _registry_text(config)
    drain_ends_by = config.budget - EXIT_MARGIN - config.shutdown_timeout
    needs = grace_needs(config)
    warnings: list[dict[str, str]] = []
    if config.max_wait < needs.drain:
        warnings.append(
            {
                "name": "max_wait",
                "message": f"--max-wait {config.max_wait:g} s ends the drain before consumers' "
                f"staleness and one quiet window ({needs.drain:.1f} s); use --max-wait "
                f"{math.ceil(needs.drain)}",
            }
        )
    elif drain_ends_by < min(config.max_wait, needs.drain):
        # Only worth saying when the cut falls before what consumers need.
        warnings.append(
            {
                "name": "max_wait",
                "message": f"--max-wait {config.max_wait:g} s cannot be reached: --budget "
                f"{config.budget:g} s ends the drain {drain_ends_by:g} s after the start, "
                f"before consumers' staleness and one quiet window ({needs.drain:.1f} s)",
            }
        )
    if config.confirm_timeout >= drain_ends_by - config.min_wait:
        warnings.append(
            {
                "name": "confirm_timeout",
                "message": f"--confirm-timeout {config.confirm_timeout:g} s may use up the "
                f"{drain_ends_by:g} s before the shutdown: a registry slow to show the take-out "
                f"leaves less than --min-wait {config.min_wait:g} s to drain",
            }
        )
    short = budget_below_plan(config)
    if short is not None:
        warnings.append({"name": "budget", "message": budget_warning_text(short)})
    return {
        "dry_run": True,
        "registry": config.registry,
        "servers": [str(s) for s in config.target.servers],
        "instance": config.instance,
        "service": config.service,
        "steps": _steps(config, drain_ends_by),
        "take_out": write,
        "confirm_timeout_s": config.confirm_timeout,
        "signals": list(config.signals),
        "signals_text": _signals_text(config),
        "quiet_window": _window_text(config),
        "min_wait_s": config.min_wait,
        "max_wait_s": config.max_wait,
        "shutdown": config.shutdown,
        "shutdown_text": _shutdown_text(config),
        "consumers_text": _consumers_text(config),
        "budget_s": config.budget,
        "drain_ends_by_s": drain_ends_by,
        "shutdown_timeout_s": config.shutdown_timeout,
        "exit_margin_s": EXIT_MARGIN,
        "needs_s": round(needs.budget, 1),
        "needs": needs.explain(),
        "use_budget": needs.suggested_budget,
        "registry_text": registry,
        "service_text": service,
        "warnings": warnings,
    }


def _consumers_text(config: Config) -> str | None:
    if config.consumers is None:
        return None
    if config.registry != "nacos":
        return "not told: Eureka lists no subscribers (--consumer-actuator is ignored)"
    auth = ", Basic auth" if config.consumers.auth else ""
    return (
        f"tell each subscriber at {config.consumers.actuator}{auth}: once its nacosdiscovery "
        f"view drops us, evict its load-balancer cache; when all let go, end "
        f"{config.consumers.settle:g} s after the last one if nothing is in flight"
    )


def plan_lines(plan: dict[str, Any]) -> list[str]:
    budget = plan["budget_s"]
    lines = [
        f"Dry run, nothing touched. prestop drain would, within --budget {budget:g} s:",
        f"  registry   {plan['registry_text']}",
        f"  instance   {plan['instance']} of {plan['service_text']}",
        f"  take out   {plan['take_out']}",
        f"  confirm    until consumers' list drops it (at most {plan['confirm_timeout_s']:g} s)",
        f"  drain      until no request for {plan['quiet_window']}; "
        f"at least {plan['min_wait_s']:g} s, at most {plan['max_wait_s']:g} s"
        + (
            f" (cut to {plan['drain_ends_by_s']:g} s by the budget)"
            if plan["drain_ends_by_s"] < plan["max_wait_s"]
            else ""
        ),
        f"  signals    {plan['signals_text']}",
        *([f"  consumers  {plan['consumers_text']}"] if plan.get("consumers_text") else []),
        f"  shut down  {plan['shutdown_text']}",
        f"  time       the drain ends by {plan['drain_ends_by_s']:g} s ({budget:g} budget - "
        f"{plan['shutdown_timeout_s']:g} shutdown - {plan['exit_margin_s']:g} exit); "
        f"outlasting consumers' caches needs a budget of {plan['needs_s']:g} s",
    ]
    for warning in plan["warnings"]:
        lines.append(f"  WARNING    {warning['message']}")
    if not plan["warnings"]:
        lines.append(f"  ok         {plan['needs']} fits in --budget {budget:g}")
    lines.append("`prestop check` also tests the registry, the app and the signals live.")
    return lines


# --- status ---


def _yes(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def status_lines(info: dict[str, Any]) -> list[str]:
    if info.get("registry") == "eureka":
        return _eureka_status_lines(info)
    head = f"{info.get('instance')} in {info.get('service')} (namespace {info.get('namespace')})"
    lines = [f"{head}, Nacos {info.get('server_version')}"]
    admin = info.get("admin_view")
    if not info.get("registered") or not isinstance(admin, dict):
        lines.append("  registered     no (nothing to take out or put back)")
    else:
        state = "in service" if admin.get("enabled") is not False else "OUT OF SERVICE (disabled)"
        lines.append(
            f"  registered     yes, {state}, healthy {_yes(admin.get('healthy'))}, "
            f"weight {_number(admin.get('weight'))}, cluster {admin.get('cluster')}"
        )
        metadata = admin.get("metadata") or {}
        if isinstance(metadata, dict) and metadata:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(metadata.items()))
            lines.append(f"  metadata       {shown}")
    lines.append(f"  consumers see  {_yes(info.get('consumer_visible'))}")
    return lines


def _eureka_status_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"app {info.get('app')} in Eureka, instance {info.get('instance_id', '(not found)')}"]
    if not info.get("registered"):
        lines.append("  registered     no (nothing to take out or put back)")
        return lines
    lines.append("  registered     yes")
    servers = info.get("servers") or {}
    for server, state in servers.items() if isinstance(servers, dict) else []:
        if state is None:
            text = "not on this server"
        elif "error" in state:
            text = f"not readable: {state['error']}"
        else:
            override = state.get("overriddenStatus")
            text = str(state.get("status"))
            if override and override not in ("UNKNOWN", state.get("status")):
                text += f" (override {override})"
        lines.append(f"  server         {server} {text}")
    lines.append(f"  consumers see  {_yes(info.get('consumer_visible'))}")
    return lines


# --- up / down ---


def switch_result(
    command: str, enabled: bool, result: TakeOut, instance: str, registry: str
) -> dict[str, Any]:
    before = result.before.enabled
    after = result.after.enabled if result.after is not None else enabled
    return {
        "command": command,
        "outcome": "ok",
        "exit_code": 0,
        "registry": registry,
        "instance": instance,
        "enabled": enabled,
        "before": {"enabled": before, "weight": result.before.weight},
        "after": {
            "enabled": after,
            "weight": result.after.weight if result.after is not None else result.before.weight,
        },
        # already_out, not the state read first: that may be our own write whose answer was lost.
        "changed": not result.already_out,
        "already": result.already_out,
        "write_unconfirmed": result.write_unconfirmed,
        "method": result.method,
        "weight": result.before.weight,
        "server_version": result.server_version,
    }


def _service_state(enabled: object) -> str:
    if isinstance(enabled, bool):
        return "in service" if enabled else "out of service"
    return "in an unknown state"


def switch_line(out: dict[str, Any]) -> str:
    before, after = out["before"], out["after"]
    head = f"{out['command']}: {out['instance']}:"
    if not out["changed"]:
        return f"{head} already {_service_state(after['enabled'])}; nothing changed"
    how = out["method"]
    if out["registry"] != "eureka":  # Eureka has no weight
        kept = before["weight"] == after["weight"]
        how = (
            f"weight {before['weight']:g} kept; {how}"
            if kept
            else f"weight {before['weight']:g} -> {after['weight']:g}; {how}"
        )
    if out.get("write_unconfirmed"):
        how += "; the answer was lost, the instance read back as written"
    return (
        f"{head} {_service_state(before['enabled'])} -> {_service_state(after['enabled'])} ({how})"
    )
