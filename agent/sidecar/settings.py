"""The sidecar's settings: fixed once it starts, never changed by what it does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class WarmupConfig:
    duration: float = 0.0  # seconds; 0: off
    start_weight: float = 0.1
    curve: Literal["quadratic", "linear"] = "quadratic"
    step: float = 1.0


@dataclass(frozen=True)
class StartupHold:
    """Delayed exposure: out from registration until healthy (+ ready URL) and ``delay`` s."""

    enabled: bool = False
    delay: float = 0.0
    ready_url: str | None = None
    poll: float = 0.2  # registration poll: the window in which consumers may see a cold pod


@dataclass(frozen=True)
class SidecarOptions:
    token: str  # what /prestop requires in the X-Prestop-Token header
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    hold: StartupHold = field(default_factory=StartupHold)
    term_linger: float = 2.0  # seconds served after SIGTERM, for a hook call just behind it
    ready_cache: float = 1.0  # seconds a readiness answer is reused (probes may come often)
