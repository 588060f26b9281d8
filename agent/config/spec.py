"""What one option declaration holds, and the per-registry default profiles.

The table of options is :mod:`agent.config.options`. Nothing here imports the rest of the
agent, so the pure drain code can take its defaults from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

RegistryKind = Literal["nacos", "eureka"]
REGISTRIES: tuple[RegistryKind, ...] = ("nacos", "eureka")
Value = str | float | int | bool | None
# How a raw value is parsed (agent.config.values.parse) and shown in --help.
Kind = Literal["text", "seconds", "number", "port", "choice", "switch", "url", "metric", "file"]
# Which commands take the option: registry (all that reach the registry), drain (drain, serve,
# ready, check), sidecar (serve, ready), state (serve, ready, up, down), check (check).
Scope = Literal["registry", "drain", "sidecar", "state", "check"]

# --help sections, in the order shown.
GROUPS: dict[str, str] = {
    "registry": "Registry",
    "instance": "Instance",
    "timing": "Drain and timing",
    "quiet": "Quiet window (adaptive)",
    "signals": "Traffic signals",
    "shutdown": "App shutdown",
    "consumers": "Consumers",
    "sidecar": "Sidecar",
    "logging": "Logging",
    "check": "Check",
}


@dataclass(frozen=True)
class Option:
    """One setting. ``special``: parsed by hand in the loader (derived or cross-checked)."""

    name: str
    help: str
    group: str
    scope: Scope
    kind: Kind = "text"
    default: Value = None  # None: unset unless a profile (below) gives one
    default_text: str | None = None  # for --help, when the default is derived or not a value
    choices: tuple[str, ...] = ()
    noun: str = "value"  # in "unknown <noun>" for a choice
    app_env: tuple[str, ...] = ()
    secret: bool = False
    minimum: float = 0.0
    allow_zero: bool = True
    metavar: str | None = None
    special: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "PRESTOP_" + self.name.upper()


# Per-registry defaults. Eureka consumers lag by up to ~95 s (server cache tick + client fetch
# + load-balancer cache, docs/eureka.md#worst-case-staleness), plus one quiet window at 1 req/s
# (6.9 s): the drain's cap. The server's apps/delta shows a change only at its next 30 s cache
# tick: the confirmation's limit. Nacos: push ~0.5 s, then Spring Cloud LoadBalancer's 35 s.
PROFILES: Mapping[RegistryKind, Mapping[str, Value]] = {
    "nacos": {"max_wait": 60.0, "confirm_timeout": 10.0, "consumer_staleness": 35.5},
    "eureka": {"max_wait": 105.0, "confirm_timeout": 35.0, "consumer_staleness": 95.0},
}


def shown(value: Value) -> str:
    """A default as --help and the docs write it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)
