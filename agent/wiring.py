"""The composition root: configuration in, concrete registry, signals and actions out.

:func:`build` returns one :class:`Resources` object that owns the HTTP clients it made; every
user closes it (``with wiring.build(config) as resources: ...``), and the sidecar built by
:func:`build_sidecar` closes it in its own ``close()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

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
from agent.sequence import Deps, Outcome, Plan, run_drain
from agent.shutdown import ActuatorShutdown, AppPort, NoShutdown, ShutdownAction, SignalShutdown
from agent.sidecar import AppHealth, Sidecar, SidecarOptions, StartupHold, WarmupConfig

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
        return EurekaRegistry(config.target, http, http_timeout=config.http_timeout)
    return build_registry(config.target, http, clock, config.http_timeout)


def build_action(config: Config, http: httpx.Client) -> ShutdownAction:
    # The app is reached over loopback: the sidecar shares the pod's network namespace.
    app = AppPort("127.0.0.1", config.port)
    if config.shutdown == "actuator":
        return ActuatorShutdown(
            config.actuator_url, http, app=app, http_timeout=config.http_timeout
        )
    if config.shutdown == "signal":
        return SignalShutdown(config.signal_target, app=app)
    return NoShutdown(app)


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


@dataclass
class Resources:
    """What one command built from its config; ``close()`` closes every HTTP client it owns."""

    clock: Clock
    registry: NacosRegistry | EurekaRegistry
    signal: TrafficSignal
    action: ShutdownAction
    consumers: ConsumerTracker | None
    plan: Plan
    registry_http: httpx.Client
    app_http: httpx.Client
    clients: list[httpx.Client] = field(default_factory=list)  # every client above, and more

    @property
    def deps(self) -> Deps:
        return Deps(
            registry=self.registry,
            signal=self.signal,
            action=self.action,
            clock=self.clock,
            consumers=self.consumers,
        )

    def run_drain(self) -> Outcome:
        return run_drain(self.deps, self.plan)

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def __enter__(self) -> Resources:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def build(config: Config, clock: Clock | None = None) -> Resources:
    """Everything ``run_drain`` needs, as one object its user closes."""
    clock = clock or SystemClock()
    # The app is reached over loopback; only an https actuator URL needs a TLS context.
    app_tls = not config.actuator_url.startswith("http://") or not config.metrics_url.startswith(
        "http://"
    )
    registry_http, app_http = http_client(), http_client(tls=app_tls)
    clients = [registry_http, app_http]
    try:
        registry = registry_for(config, registry_http, clock)
        consumers = consumer_tracker(config, registry, clock)
        if consumers is not None:
            clients.append(consumers.http)
        return Resources(
            clock=clock,
            registry=registry,
            signal=build_signal(config, app_http),
            action=build_action(config, app_http),
            consumers=consumers,
            plan=Plan(
                budget=config.budget,
                drain=drain_config(config),
                confirm_timeout=config.confirm_timeout,
                shutdown_timeout=config.shutdown_timeout,
            ),
            registry_http=registry_http,
            app_http=app_http,
            clients=clients,
        )
    except BaseException:
        for client in clients:
            client.close()
        raise


def build_sidecar(config: Config, side: SidecarSettings, clock: Clock | None = None) -> Sidecar:
    """The sidecar: the same sequence as ``prestop drain``, behind single-flight HTTP."""
    resources = build(config, clock)
    health_http = resources.app_http
    if side.health_url.startswith("https://"):
        health_http = http_client()
        resources.clients.append(health_http)
    registry = resources.registry
    return Sidecar(
        registry=registry,
        run_drain=resources.run_drain,
        app=AppHealth(health_http, side.health_url),
        clock=resources.clock,
        options=SidecarOptions(
            token=side.token,
            warmup=WarmupConfig(side.warmup, side.warmup_start_weight, side.warmup_curve),
            hold=StartupHold(side.startup_hold, side.startup_delay, side.ready_url),
            term_linger=side.term_linger,
        ),
        # Only Nacos has weights to warm up; Eureka's instances have none.
        weights=registry if isinstance(registry, NacosRegistry) else None,
        holds=HoldFile(side.state_dir, config.instance),
        resources=resources,
    )
