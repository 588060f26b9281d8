"""/readyz: the app is healthy AND consumers see the instance; false once a drain starts."""

from __future__ import annotations

import threading

import httpx

from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError
from agent.httpcall import send
from agent.sidecar.seams import SidecarRegistry
from agent.sidecar.state import SidecarState


class AppHealth:
    """The app's own answers: its health URL and, for the start-up hold, its ready URL."""

    def __init__(self, http: httpx.Client, health_url: str) -> None:
        self.http = http
        self.health_url = health_url

    def healthy(self, deadline: Deadline) -> bool:
        return self._status(self.health_url, deadline, 1.0) == 200

    def answers_2xx(self, url: str, deadline: Deadline) -> bool:
        status = self._status(url, deadline, 5.0)
        return status is not None and 200 <= status < 300

    def _status(self, url: str, deadline: Deadline, cap: float) -> int | None:
        """The app's status for ``url``; None when it did not answer (or no time was left)."""
        try:
            return send(self.http, "GET", url, deadline, cap, AgentError).status_code
        except AgentError:
            return None


class Readiness:
    """The readiness answer, reused for ``cache`` seconds (probes may come often)."""

    def __init__(
        self,
        registry: SidecarRegistry,
        app: AppHealth,
        clock: Clock,
        state: SidecarState,
        cache: float,
    ) -> None:
        self.registry = registry
        self.app = app
        self.clock = clock
        self.state = state
        self.cache = cache
        self._last: tuple[float, bool, list[str]] = (float("-inf"), False, [])
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, list[str]]:
        """Ready = app healthy, registered, enabled and visible to consumers, not draining."""
        if self.state.draining.is_set():
            return False, ["draining"]
        now = self.clock.now()
        with self._lock:
            at, ready, reasons = self._last
            if now - at < self.cache:
                return ready, reasons
        deadline = Deadline.after(self.clock, 2.0)
        reasons = ["startup_hold"] if self.state.holding else []
        if not self.app.healthy(deadline):
            reasons.append("app_not_healthy")
        try:
            # Readiness may differ from the take-out's confirmation (Eureka: listed UP).
            if not self.registry.serving(deadline):
                reasons.append("not_visible_to_consumers")
        except AgentError as exc:
            reasons.append(f"registry_error: {type(exc).__name__}")
        ready = not reasons and not self.state.draining.is_set()
        with self._lock:
            self._last = (now, ready, reasons)
        return ready, reasons
