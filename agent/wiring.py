"""The composition root: configuration in, concrete registry, signals and actions out."""

from __future__ import annotations

import httpx

from agent import __version__
from agent.config import Config, EurekaSettings, NacosSettings, SidecarSettings
from agent.consumers import ConsumerTracker
from agent.deadline import Clock, SystemClock
from agent.drain.policy import DrainConfig
from agent.drain.signals import (
    ActuatorMetricsSignal,
    FirstAvailable,
    PrometheusSignal,
    TrafficSignal,
)
from agent.drain.sockdiag import CombinedSignal, KernelSocketSignal
from agent.holdstate import HoldFile
from agent.logs import get_logger
from agent.registry.eureka import EurekaRegistry
from agent.registry.nacos import NacosHttp, NacosRegistry
from agent.sequence import Deps, Plan, run_drain
from agent.shutdown import ActuatorShutdown, NoShutdown, ShutdownAction, SignalShutdown
from agent.sidecar import Sidecar, StartupHold, WarmupConfig

USER_AGENT = f"prestop-agent/{__version__}"
log = get_logger()


def http_client(*, tls: bool = True) -> httpx.Client:
    # Timeouts are always passed per call from the Deadline; this default only guards mistakes.
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(3.0),
        follow_redirects=False,
        trust_env=False,
        # A verifying TLS context loads the CA bundle (~2 MB); plain-HTTP clients skip it.
        verify=tls,
    )


def build_registry(
    settings: NacosSettings, http: httpx.Client, clock: Clock, http_timeout: float
) -> NacosRegistry:
    return NacosRegistry(settings, NacosHttp(settings, http, clock, http_timeout=http_timeout))


def registry_for(
    config: Config, http: httpx.Client, clock: Clock
) -> NacosRegistry | EurekaRegistry:
    """The configured registry's adapter."""
    if isinstance(config.target, EurekaSettings):
        return EurekaRegistry(config.target, http, clock, http_timeout=config.http_timeout)
    return build_registry(config.target, http, clock, config.http_timeout)


def build_action(config: Config, http: httpx.Client) -> ShutdownAction:
    if config.shutdown == "actuator":
        return ActuatorShutdown(config.actuator_url, http, http_timeout=config.http_timeout)
    if config.shutdown == "signal":
        return SignalShutdown(config.signal_target)
    return NoShutdown()


def signal_components(config: Config, http: httpx.Client) -> list[TrafficSignal]:
    """Every traffic signal the configuration asks for, each on its own.

    The one place signals are constructed: ``prestop check`` reads these to say which answer,
    and the drain composes the same objects (:func:`build_signal`), so the two cannot disagree.
    """
    names = set(config.signals)
    if "auto" in names:
        names |= {"prometheus", "actuator", "kernel"}
    out: list[TrafficSignal] = []
    if "prometheus" in names:
        out.append(
            PrometheusSignal(
                config.metrics_url,
                http,
                http_timeout=config.http_timeout,
                requests_metric=config.requests_metric,
                active_metric=config.in_flight_metric,
            )
        )
    if "actuator" in names:
        out.append(
            ActuatorMetricsSignal(config.actuator_url, http, http_timeout=config.http_timeout)
        )
    if "kernel" in names:
        # Built lazily: pyroute2 is imported (about 20 MB) only when the drain first reads it,
        # so an idle sidecar stays small; where netlink is unreadable, auto just goes without.
        out.append(KernelSocketSignal(config.port, require_port=True))
    return out


def consumer_tracker(
    config: Config, registry: NacosRegistry | EurekaRegistry, clock: Clock | None = None
) -> ConsumerTracker | None:
    """The consumers to tell, when configured (Nacos only); its HTTP client is its own."""
    if config.consumers is None:
        return None
    if not isinstance(registry, NacosRegistry):
        # Eureka lists no subscribers, and its clients' own 30 s fetch sits under the
        # load-balancer cache: evicting that cache alone cannot end a drain early.
        log.warning("consumer_notify_unsupported", registry=registry.name)
        return None
    return ConsumerTracker(
        source=registry,
        settings=config.consumers,
        http=http_client(tls=config.consumers.actuator.startswith("https")),
        clock=clock or SystemClock(),
        ip=config.ip,
        port=config.port,
        service=config.service,
        http_timeout=config.http_timeout,
    )


def build_signal(config: Config, http: httpx.Client) -> TrafficSignal:
    """The traffic signals to drain by; ``auto``: Prometheus (else the actuator's metrics JSON)
    plus the kernel when readable."""
    components = signal_components(config, http)
    if "auto" in config.signals:
        http_signals = [s for s in components if s.name in ("prometheus", "actuator")]
        explicit = set(config.signals)
        # auto's Prometheus-else-actuator pair, unless a source is also named on its own.
        if not explicit & {"prometheus", "actuator"}:
            rest = [s for s in components if s not in http_signals]
            components = [FirstAvailable(http_signals), *rest]
    return components[0] if len(components) == 1 else CombinedSignal(components)


def check_signals(config: Config, http: httpx.Client) -> list[TrafficSignal]:
    """Each signal the drain may use, separately, so ``prestop check`` can say which answer."""
    return signal_components(config, http)


def drain_config(config: Config) -> DrainConfig:
    return DrainConfig(
        min_wait=config.min_wait,
        max_wait=config.max_wait,
        quiet_window=config.quiet_window,
        poll_interval=config.poll_interval,
        confidence=config.confidence,
        quiet_floor=config.quiet_floor,
        quiet_cap=config.quiet_cap,
        settle=config.consumers.settle if config.consumers is not None else DrainConfig.settle,
    )


def build(config: Config, clock: Clock | None = None) -> tuple[Deps, Plan, list[httpx.Client]]:
    """Everything ``run_drain`` needs; the caller closes the returned clients."""
    clock = clock or SystemClock()
    # The app is reached over loopback; only an https actuator URL needs a TLS context.
    app_tls = not config.actuator_url.startswith("http://") or not config.metrics_url.startswith(
        "http://"
    )
    registry_http, app_http = http_client(), http_client(tls=app_tls)
    registry = registry_for(config, registry_http, clock)
    deps = Deps(
        registry=registry,
        signal=build_signal(config, app_http),
        action=build_action(config, app_http),
        clock=clock,
        app_host="127.0.0.1",
        app_port=config.port,
    )
    deps.consumers = consumer_tracker(config, registry, clock)
    clients = [registry_http, app_http]
    if deps.consumers is not None:
        clients.append(deps.consumers.http)
    plan = Plan(
        budget=config.budget,
        drain=drain_config(config),
        confirm_timeout=config.confirm_timeout,
        shutdown_timeout=config.shutdown_timeout,
    )
    return deps, plan, clients


def build_sidecar(config: Config, side: SidecarSettings, clock: Clock | None = None) -> Sidecar:
    """The sidecar: the same sequence as ``prestop drain``, behind single-flight HTTP."""
    clock = clock or SystemClock()
    deps, plan, clients = build(config, clock)
    app_http = clients[1]
    if side.health_url.startswith("https://"):
        app_http = http_client()
        clients = [*clients, app_http]
    registry = deps.registry
    assert isinstance(registry, NacosRegistry | EurekaRegistry)
    return Sidecar(
        registry=registry,
        run_drain=lambda: run_drain(deps, plan),
        health_url=side.health_url,
        http=app_http,
        clock=clock,
        token=side.token,
        warmup=WarmupConfig(side.warmup, side.warmup_start_weight, side.warmup_curve),
        hold=StartupHold(side.startup_hold, side.startup_delay, side.ready_url),
        holds=HoldFile(side.state_dir, config.instance),
        term_linger=side.term_linger,
        clients=[c for c in clients if c is not app_http],
    )
