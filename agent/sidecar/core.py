"""The sidecar, independent of HTTP: its dependencies, settings and state, kept apart."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

from agent.deadline import Clock
from agent.holdstate import HoldFile
from agent.logs import get_logger
from agent.sequence import Outcome
from agent.sidecar.readiness import AppHealth, Readiness
from agent.sidecar.seams import SidecarRegistry, WeightedRegistry
from agent.sidecar.settings import SidecarOptions
from agent.sidecar.startup import StartUp
from agent.sidecar.state import HoldRecord, SidecarState, SingleFlight
from agent.sidecar.warmup import WarmUp

log = get_logger()


class Closeable(Protocol):
    def close(self) -> None: ...


class Sidecar:
    """One pod's sidecar: the single-flight preStop run, readiness and the start-up work.

    ``weights``: the registry's weights when it has any (Nacos), else None and no warm-up.
    ``resources``: what :meth:`close` closes (the HTTP clients the wiring built).
    """

    def __init__(
        self,
        registry: SidecarRegistry,
        run_drain: Callable[[], Outcome],
        app: AppHealth,
        clock: Clock,
        options: SidecarOptions,
        *,
        weights: WeightedRegistry | None = None,
        holds: HoldFile | None = None,
        resources: Closeable | None = None,
    ) -> None:
        self.registry = registry
        self.options = options
        self.clock = clock
        self.weights = weights
        self.state = SidecarState()
        self.record = HoldRecord(holds or HoldFile(None, ""))
        self.ready = Readiness(registry, app, clock, self.state, options.ready_cache)
        self._startup = StartUp(registry, app, clock, self.state, options.hold, self.record)
        self._run_drain = run_drain
        self._resources = resources
        self.flight = SingleFlight(self._drain)

    def close(self) -> None:
        if self._resources is not None:
            self._resources.close()

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drain(self) -> Outcome:
        self.state.draining.set()
        self.record.write("drain", "prestop hook")
        outcome = self._run_drain()
        log.info("prestop_summary", **outcome.summary())
        return outcome

    def authorized(self, presented: str | None) -> bool:
        # Constant-time: the token must not leak through response timing.
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.options.token.encode()
        )

    def readiness(self) -> tuple[bool, list[str]]:
        return self.ready.check()

    def start_up(self, app_start_timeout: float = 600.0) -> None:
        """Wait for the registration, hold it out until ready (or repair a stale disable), then
        warm up; an operator's hold and this pod's drain are left alone."""
        found = self._startup.run(app_start_timeout)
        if found is None or self.options.warmup.duration <= 0:
            return
        if self.weights is None:
            log.warning("warmup_unsupported", registry=self.registry.name, reason="no weights")
            return
        WarmUp(self.weights, self.options.warmup, self.clock, self.state).run(target=found.weight)
