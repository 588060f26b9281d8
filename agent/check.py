"""``prestop check``: a preflight for a running pod or a pipeline, one line per finding.

Each finding is ``ok``, ``warn`` or ``fail``; any ``warn`` or ``fail`` makes the command exit
non-zero, so a pipeline can gate on it. Nothing is written to the registry. The grace
arithmetic is a pure function (:func:`grace_findings`) so it can be tested without a pod.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from agent.config import REGISTRIES, Config, seconds_default
from agent.consumers import ConsumerTracker
from agent.deadline import Deadline
from agent.drain.policy import adaptive_window
from agent.drain.signals import READ_FAILURES, TrafficSignal
from agent.exceptions import AgentError, AuthError, json_of
from agent.httpcall import send
from agent.registry import InstanceState

Level = Literal["ok", "warn", "fail"]

# How long after the take-out a consumer may still route to us, when nobody says otherwise:
# the registry profiles' --consumer-staleness (agent.config.spec.PROFILES says why).
DEFAULT_STALENESS: dict[str, float] = {
    kind: seconds_default("consumer_staleness", kind) for kind in REGISTRIES
}
# Slack for HTTP calls and scheduling inside the budget, and after the hook for kubelet's
# SIGTERM and the container's exit.
BUDGET_MARGIN = 2.0
GRACE_MARGIN = 5.0
# The lowest rate whose silence we plan for: an auto window at 1 req/s is ln(1/conf) s.
PLANNING_RATE = 1.0


class CheckedRegistry(Protocol):
    """What the preflight needs of a registry adapter: it reads, never writes."""

    def connect(self, deadline: Deadline) -> str: ...

    def describe_instance(self) -> str: ...

    def get_instance(self, deadline: Deadline) -> InstanceState | None: ...


@dataclass(frozen=True)
class Finding:
    name: str
    level: Level
    message: str

    def line(self) -> str:
        return f"{self.level:<4}  {self.name:<10}  {self.message}"


@dataclass(frozen=True)
class GraceNeeds:
    """What the budget must cover, in seconds."""

    staleness: float
    quiet: float
    shutdown: float
    margin: float = BUDGET_MARGIN

    @property
    def drain(self) -> float:
        return self.staleness + self.quiet

    @property
    def budget(self) -> float:
        return self.drain + self.shutdown + self.margin

    @property
    def suggested_budget(self) -> int:
        return math.ceil(self.budget)

    @property
    def suggested_grace(self) -> int:
        return self.suggested_budget + int(GRACE_MARGIN)

    def explain(self) -> str:
        return (
            f"consumers' staleness {self.staleness:g} + one quiet window {self.quiet:.1f} "
            f"+ app shutdown {self.shutdown:g} + margin {self.margin:g} = {self.budget:.1f} s"
        )


def grace_needs(config: Config) -> GraceNeeds:
    from agent.wiring import drain_config

    return GraceNeeds(
        staleness=config.consumer_staleness,
        quiet=adaptive_window(PLANNING_RATE, drain_config(config)),
        shutdown=config.shutdown_timeout,
    )


def grace_findings(
    needs: GraceNeeds, *, budget: float, max_wait: float, grace: float | None
) -> list[Finding]:
    """The grace-budget arithmetic: budget, max-wait and terminationGracePeriodSeconds."""
    out: list[Finding] = []
    if budget >= needs.budget:
        out.append(Finding("budget", "ok", f"--budget {budget:g} s covers {needs.explain()}"))
    else:
        out.append(
            Finding(
                "budget",
                "fail",
                f"--budget {budget:g} s is short of {needs.explain()}; use --budget "
                f"{needs.suggested_budget} and terminationGracePeriodSeconds: "
                f"{needs.suggested_grace}",
            )
        )
    if max_wait < needs.drain:
        out.append(
            Finding(
                "max_wait",
                "warn",
                f"--max-wait {max_wait:g} s ends the drain before consumers' staleness and one "
                f"quiet window ({needs.drain:.1f} s); use --max-wait {math.ceil(needs.drain)}",
            )
        )
    want_grace = max(needs.suggested_grace, math.ceil(budget + GRACE_MARGIN))
    if grace is None:
        out.append(
            Finding(
                "grace",
                "ok",
                f"set terminationGracePeriodSeconds: {want_grace} "
                f"(--budget + {GRACE_MARGIN:g} s; pass --grace to check an existing value)",
            )
        )
    elif grace < budget + GRACE_MARGIN:
        out.append(
            Finding(
                "grace",
                "fail",
                f"terminationGracePeriodSeconds {grace:g} < --budget {budget:g} + "
                f"{GRACE_MARGIN:g} s: kubelet kills the hook before it ends; "
                f"set terminationGracePeriodSeconds: {want_grace}",
            )
        )
    else:
        out.append(
            Finding(
                "grace",
                "ok",
                f"terminationGracePeriodSeconds {grace:g} covers --budget {budget:g} "
                f"+ {GRACE_MARGIN:g} s",
            )
        )
    return out


def registry_findings(registry: CheckedRegistry, deadline: Deadline) -> list[Finding]:
    """Reachable and login accepted; then our instance registered, in service, visible."""
    try:
        described = registry.connect(deadline)
    except AuthError as exc:
        return [Finding("registry", "fail", f"login refused: {exc}")]
    except AgentError as exc:
        return [Finding("registry", "fail", f"not reachable: {exc}")]
    out = [Finding("registry", "ok", described)]
    try:
        state = registry.get_instance(deadline)
    except AuthError as exc:
        return [*out, Finding("instance", "fail", f"registry refused the read: {exc}")]
    except AgentError as exc:
        return [*out, Finding("instance", "fail", f"could not read the instance: {exc}")]
    if state is None:
        out.append(
            Finding(
                "instance",
                "fail",
                f"{registry.describe_instance()} is not registered; check --service, --ip "
                "(POD_IP) and --port, and that the app has started",
            )
        )
    elif state.enabled is False:
        out.append(
            Finding(
                "instance",
                "warn",
                f"{registry.describe_instance()} is registered but out of service (a leftover "
                "of an earlier pod on this IP:port, or a maintenance `prestop down`); "
                "`prestop up` puts it back",
            )
        )
    else:
        out.append(
            Finding(
                "instance",
                "ok",
                f"{registry.describe_instance()} registered and in service "
                f"(weight {state.weight:g})",
            )
        )
    return out


def app_findings(
    config: Config,
    http: httpx.Client,
    deadline: Deadline,
    signals: Iterable[TrafficSignal],
    find_pids: Callable[[str], list[int]],
) -> list[Finding]:
    """The app's actuator, its shutdown trigger, and which traffic signals answer."""
    out: list[Finding] = []
    health = config.actuator_url + "/health"
    try:
        r = send(http, "GET", health, deadline, config.http_timeout, AgentError)
        if r.status_code == 200:
            out.append(Finding("actuator", "ok", f"GET {health} -> 200"))
        else:
            out.append(
                Finding("actuator", "fail", f"GET {health} -> HTTP {r.status_code}; is it up?")
            )
    except AgentError as exc:
        out.append(Finding("actuator", "fail", f"{exc}; check --actuator-url and --port"))
    out.append(_shutdown_finding(config, http, deadline, find_pids))
    answered, missing = [], []
    for signal in signals:
        try:
            signal.read(deadline)
            answered.append(signal.name)
        except READ_FAILURES as exc:
            missing.append(f"{signal.name}: {exc}")
    if not answered:
        out.append(
            Finding(
                "signals",
                "fail",
                "no traffic signal answered ("
                + "; ".join(missing)
                + "): the drain would wait --max-wait every time; expose prometheus "
                "(management.endpoints.web.exposure.include) or check --metrics-url",
            )
        )
    elif missing and config.signals != ("auto",):
        out.append(
            Finding(
                "signals",
                "warn",
                f"answered: {', '.join(answered)}; not answering: {'; '.join(missing)}",
            )
        )
    else:
        extra = f" (not available: {'; '.join(missing)})" if missing else ""
        out.append(Finding("signals", "ok", f"answered: {', '.join(answered)}{extra}"))
    return out


def _shutdown_finding(
    config: Config,
    http: httpx.Client,
    deadline: Deadline,
    find_pids: Callable[[str], list[int]],
) -> Finding:
    if config.shutdown == "none":
        return Finding(
            "shutdown", "ok", "left to kubelet's SIGTERM after the hook (--shutdown none)"
        )
    if config.shutdown == "signal":
        pids = find_pids(config.signal_target)
        if pids:
            return Finding("shutdown", "ok", f"SIGTERM target {config.signal_target!r}: PID {pids}")
        return Finding(
            "shutdown",
            "fail",
            f"no process matches --signal-target {config.signal_target!r}; in a sidecar set "
            "shareProcessNamespace: true and give the app's process name",
        )
    # Spring Boot lists the exposed endpoints on the actuator root ("_links").
    try:
        r = send(http, "GET", config.actuator_url, deadline, config.http_timeout, AgentError)
        links = json_of(r).get("_links", {}) if r.status_code == 200 else {}
    except (AgentError, ValueError, AttributeError):
        links = None
    if links is None:
        return Finding(
            "shutdown",
            "warn",
            f"could not list the endpoints at {config.actuator_url}; POST /shutdown is unverified",
        )
    if isinstance(links, dict) and "shutdown" in links:
        return Finding("shutdown", "ok", f"POST {config.actuator_url}/shutdown is exposed")
    return Finding(
        "shutdown",
        "fail",
        f"{config.actuator_url}/shutdown is not exposed: set management.endpoint.shutdown."
        "enabled=true (Boot 3.4+: management.endpoint.shutdown.access=unrestricted) and add "
        "shutdown to management.endpoints.web.exposure.include, or use --shutdown signal",
    )


def consumer_findings(tracker: ConsumerTracker | None, deadline: Deadline) -> list[Finding]:
    """One finding per subscriber: reachable, nacosdiscovery view readable, cache exposed."""
    if tracker is None:
        return []
    return [
        Finding("consumer", level, f"{name}: {message}")
        for name, level, message in tracker.probe(deadline)
    ]


def exit_code(findings: Iterable[Finding]) -> int:
    return 0 if all(f.level == "ok" for f in findings) else 1


def weights_findings(registry: str, warmup_s: float, startup_hold: bool) -> list[Finding]:
    """What a weight warm-up does for the consumers people run (the agent cannot see them).

    Only Spring Cloud Alibaba's NacosLoadBalancer (spring.cloud.loadbalancer.nacos.enabled=true)
    routes by Nacos weight; Spring Cloud LoadBalancer's default round robin ignores weights and
    Eureka has none. What works for every consumer is keeping a cold instance out: the hold.
    """
    hold = (
        "the start-up hold is on"
        if startup_hold
        else "to keep a cold instance out for every consumer use the sidecar's "
        "--startup-hold on (with --startup-delay or --ready-url)"
    )
    if registry == "eureka":
        level: Level = "warn" if warmup_s > 0 else "ok"
        return [
            Finding(
                "weights",
                level,
                f"Eureka has no weights: a weight warm-up does nothing"
                f"{' (--warmup is set)' if warmup_s > 0 else ''}; {hold}",
            )
        ]
    return [
        Finding(
            "weights",
            "ok",
            "Nacos weights steer only consumers on Spring Cloud Alibaba's NacosLoadBalancer "
            "(spring.cloud.loadbalancer.nacos.enabled=true); Spring Cloud LoadBalancer's default "
            f"round robin ignores them, so --warmup ramps nothing for those; {hold}",
        )
    ]
