"""``prestop serve``: the agent as a sidecar, for images with no shell (distroless, buildpacks).

Kubelet calls ``GET /prestop`` on the pod IP (an ``httpGet`` preStop hook on the app container)
and waits for the answer; the sidecar shares the pod's network namespace, so it drains and stops
the app exactly as ``prestop drain`` does. Hooks are delivered at least once: concurrent and
repeated calls join the one run (single flight) and get its outcome.

Also: ``/healthz`` (alive), ``/readyz`` (the app is healthy AND consumers see the instance; false
once a drain starts), ``/metrics`` (Prometheus text); at start-up the stale-disabled repair
(Nacos' 60 s IP-reuse problem), an optional start-up hold (the instance is kept out of
consumers' lists from its registration until the app is ready) and an optional weight warm-up.
Who took the instance out is kept in a hold record (:mod:`agent.holdstate`), so a restarted
sidecar finishes its own start-up hold and leaves an operator's ``prestop down`` alone.

A plain sidecar gets SIGTERM together with the app: it keeps serving for ``term_linger``
seconds (the hook call may arrive just after the signal) and while a run is in progress.

The modules, by concern: :mod:`~agent.sidecar.seams` (what it needs of a registry),
:mod:`~agent.sidecar.settings` (fixed at start), :mod:`~agent.sidecar.state` (what it did and
does), :mod:`~agent.sidecar.readiness`, :mod:`~agent.sidecar.startup` (hold and repair),
:mod:`~agent.sidecar.warmup`, :mod:`~agent.sidecar.core` (the :class:`Sidecar` that composes
them) and :mod:`~agent.sidecar.routes` (HTTP).
"""

from agent.sidecar.core import Sidecar
from agent.sidecar.readiness import AppHealth
from agent.sidecar.routes import TOKEN_HEADER, make_server, metrics_text, serve
from agent.sidecar.seams import SidecarRegistry, WeightedRegistry
from agent.sidecar.settings import SidecarOptions, StartupHold, WarmupConfig
from agent.sidecar.state import SidecarState, SingleFlight
from agent.sidecar.warmup import WarmUp, warmup_weight

__all__ = [
    "TOKEN_HEADER",
    "AppHealth",
    "Sidecar",
    "SidecarOptions",
    "SidecarRegistry",
    "SidecarState",
    "SingleFlight",
    "StartupHold",
    "WarmUp",
    "WarmupConfig",
    "WeightedRegistry",
    "make_server",
    "metrics_text",
    "serve",
    "warmup_weight",
]
