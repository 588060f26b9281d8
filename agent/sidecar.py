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
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError, InstanceNotFound
from agent.holdstate import Hold, HoldFile
from agent.httpserver import BoundedHTTPServer, Limits, Request, Response, Route
from agent.logs import get_logger
from agent.registry import InstanceState
from agent.registry.eureka import EurekaRegistry
from agent.registry.nacos import NacosRegistry
from agent.sequence import Outcome

log = get_logger()

TOKEN_HEADER = "X-Prestop-Token"  # noqa: S105 - a header name, not a secret


class SingleFlight:
    """Runs ``fn`` once; every caller, during or after the run, gets that run's result."""

    def __init__(self, fn: Callable[[], Outcome]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.started = False
        self.result: Outcome | None = None
        self.error: BaseException | None = None

    def run(self) -> tuple[Outcome | None, BaseException | None]:
        with self._lock:
            first = not self.started
            self.started = True
        if first:
            try:
                self.result = self._fn()
            except Exception as exc:  # reported to every caller as a 500
                self.error = exc
                log.exception("prestop_run_failed", error=str(exc))
            finally:
                self._done.set()
        self._done.wait()
        return self.result, self.error

    @property
    def running(self) -> bool:
        return self.started and not self._done.is_set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()


def warmup_weight(
    elapsed: float,
    duration: float,
    start: float,
    target: float,
    curve: Literal["quadratic", "linear"] = "quadratic",
) -> float:
    """The weight ``elapsed`` seconds into a warm-up (quadratic, like Sermant's and MSE's)."""
    if duration <= 0 or elapsed >= duration:
        return target
    fraction = max(0.0, elapsed) / duration
    if curve == "quadratic":
        fraction *= fraction
    return start + (target - start) * fraction


@dataclass
class WarmupConfig:
    duration: float = 0.0  # seconds; 0: off
    start_weight: float = 0.1
    curve: Literal["quadratic", "linear"] = "quadratic"
    step: float = 1.0


@dataclass
class StartupHold:
    """Delayed exposure: out from registration until healthy (+ ready URL) and ``delay`` s."""

    enabled: bool = False
    delay: float = 0.0
    ready_url: str | None = None
    poll: float = 0.2  # registration poll: the window in which consumers may see a cold pod


@dataclass
class Sidecar:
    """The sidecar's state and behaviour, independent of HTTP."""

    registry: NacosRegistry | EurekaRegistry
    run_drain: Callable[[], Outcome]
    health_url: str
    http: httpx.Client
    clock: Clock
    token: str
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    hold: StartupHold = field(default_factory=StartupHold)
    holds: HoldFile = field(default_factory=lambda: HoldFile(None, ""))
    term_linger: float = 2.0
    ready_cache: float = 1.0
    flight: SingleFlight = field(init=False)
    draining: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    warmup_progress: float = 0.0
    repaired: bool = False
    holding: bool = False
    hold_seconds: float | None = None
    _ready: tuple[float, bool, list[str]] = (float("-inf"), False, [])
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clients: list[httpx.Client] = field(default_factory=list)  # closed by close()

    def close(self) -> None:
        for client in (self.http, *self.clients):
            client.close()

    def __post_init__(self) -> None:
        self.flight = SingleFlight(self._drain)

    def _drain(self) -> Outcome:
        self.draining.set()
        self._record("drain", "prestop hook")
        outcome = self.run_drain()
        log.info("prestop_summary", **outcome.summary())
        return outcome

    def authorized(self, presented: str | None) -> bool:
        # Constant-time: the token must not leak through response timing.
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.token.encode()
        )

    # --- readiness ---

    def app_healthy(self, deadline: Deadline) -> bool:
        try:
            return self.http.get(self.health_url, timeout=deadline.timeout(1.0)).status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready = app healthy, registered, enabled and visible to consumers, not draining."""
        if self.draining.is_set():
            return False, ["draining"]
        now = self.clock.now()
        with self._lock:
            at, ready, reasons = self._ready
            if now - at < self.ready_cache:
                return ready, reasons
        deadline = Deadline.after(self.clock, 2.0)
        reasons = ["startup_hold"] if self.holding else []
        if not self.app_healthy(deadline):
            reasons.append("app_not_healthy")
        try:
            # Readiness may differ from the take-out's confirmation (Eureka: listed UP).
            if not self.registry.serving(deadline):
                reasons.append("not_visible_to_consumers")
        except AgentError as exc:
            reasons.append(f"registry_error: {type(exc).__name__}")
        ready = not reasons and not self.draining.is_set()
        with self._lock:
            self._ready = (now, ready, reasons)
        return ready, reasons

    # --- start-up work: stale-disabled repair, then warm-up ---

    def _record(self, holder: Literal["startup", "drain"], reason: str) -> None:
        try:
            self.holds.write(holder, reason)
        except OSError as exc:
            # Without the record a restarted sidecar cannot tell whose hold this is: say so,
            # and go on as without --state-dir rather than read back a record that is not there.
            log.warning("hold_state_write_failed", holder=holder, error=str(exc))
            self.holds = HoldFile(None, self.holds.instance, self.holds.pod)

    def _clear_record(self) -> None:
        try:
            self.holds.clear()
        except OSError as exc:
            log.warning("hold_state_write_failed", holder=None, error=str(exc))

    def _wait_registered(self, app_start_timeout: float) -> InstanceState | None:
        """The instance once registered; with the hold on, without waiting for the app's health
        (every poll the instance is visible and not yet held is a chance for a cold request)."""
        end = self.clock.now() + app_start_timeout
        interval = self.hold.poll if self.hold.enabled else 1.0
        while not self.stop.is_set() and not self.draining.is_set() and self.clock.now() < end:
            deadline = Deadline.after(self.clock, 3.0)
            if self.hold.enabled or self.app_healthy(deadline):
                try:
                    state = self.registry.get_instance(deadline)
                except AgentError as exc:
                    log.info("startup_registry_unavailable", error=str(exc))
                    state = None
                if state is not None:
                    return state
            self.clock.sleep(interval)
        return None

    def start_up(self, app_start_timeout: float = 600.0) -> None:
        """Wait for the registration, hold it out until ready (or repair a stale disable), then
        warm up; an operator's hold and this pod's drain are left alone."""
        try:
            state = self._hold_or_repair(app_start_timeout)
        finally:
            self.holding = False
        if state is not None and self.warmup.duration > 0:
            if not hasattr(self.registry, "set_weight"):
                log.warning("warmup_unsupported", registry=self.registry.name, reason="no weights")
                return
            self.warm_up(target=state.weight)

    def _hold_or_repair(self, app_start_timeout: float) -> InstanceState | None:
        """The registered instance, in service; None: left out (or never seen)."""
        state = self._wait_registered(app_start_timeout)
        if state is None or self.draining.is_set():
            return None
        prior = self.holds.read()
        if prior is not None and prior.holder == "operator":
            log.warning("operator_hold_kept", since=prior.since, reason=prior.reason)
            return None
        if prior is not None and prior.holder == "drain" and prior.pod == self.holds.pod:
            log.warning("drain_hold_kept", since=prior.since)
            return None
        if prior is not None:
            # Ours to finish: a predecessor's start-up hold, or a drain of an earlier pod.
            log.info("hold_state_inherited", holder=prior.holder, pod=prior.pod)
        if self.hold.enabled:
            return state if self._hold_until_ready(state) else None
        if state.enabled is False:
            self._repair(state)
        elif prior is not None:
            self._clear_record()
        return state

    def _repair(self, state: InstanceState) -> None:
        # The app has just started and registered, yet the instance is out of service: on
        # Nacos an ops record left by the previous pod on this IP:port (kept ~60 s and
        # revived on re-registration, alibaba/nacos#6295, #14606); on Eureka a predecessor's
        # OUT_OF_SERVICE override on the same instance id; or this sidecar's predecessor's
        # start-up hold. See docs/eureka.md#stale-override-after-a-restart.
        try:
            self.registry.put_back(Deadline.after(self.clock, 5.0))
            self.repaired = True
            self._clear_record()
            log.warning("stale_disabled_repaired", instance=f"{state.ip}:{state.port}")
        except AgentError as exc:
            log.error("stale_disabled_repair_failed", error=str(exc))

    def _still_ours(self) -> bool:
        """False once someone else owns the hold (an operator's down or up, a drain)."""
        if self.draining.is_set():
            return False
        if self.holds.path is None:
            return True
        current: Hold | None = self.holds.read()
        return current is not None and current.holder == "startup" and current.pod == self.holds.pod

    def _hold_until_ready(self, state: InstanceState) -> bool:
        """Take the instance out, wait until ready, put it back. True: it is back in."""
        begun = self.clock.now()
        self.holding = True
        # Recorded before the write: a sidecar killed between the two leaves a record that
        # makes its successor finish the hold rather than keep an instance out for nobody.
        self._record("startup", "held until the app is ready")
        try:
            while not self._still_ours() or not self._take_out_for_hold():
                if not self._still_ours() or self.stop.is_set():
                    log.warning("startup_hold_yielded", reason="hold taken over")
                    return False
                self.clock.sleep(1.0)
            log.info(
                "startup_hold_started",
                instance=f"{state.ip}:{state.port}",
                delay_s=self.hold.delay,
                ready_url=self.hold.ready_url,
            )
            if not self._wait_ready():
                return False
            while True:
                if not self._still_ours():
                    log.warning("startup_hold_yielded", reason="hold taken over")
                    return False
                if self._put_back_after_hold():
                    break
                self.clock.sleep(1.0)
        finally:
            self.holding = False
        self.hold_seconds = round(self.clock.now() - begun, 3)
        self._clear_record()
        log.info("startup_hold_released", held_s=self.hold_seconds)
        return True

    def _take_out_for_hold(self) -> bool:
        try:
            self.registry.take_out(Deadline.after(self.clock, 5.0))
            return True
        except AgentError as exc:
            log.warning("startup_hold_take_out_failed", error=str(exc))
            return False

    def _put_back_after_hold(self) -> bool:
        try:
            self.registry.put_back(Deadline.after(self.clock, 5.0))
            return True
        except InstanceNotFound:
            return True  # the app deregistered: nothing is held any more
        except AgentError as exc:
            # Retried until it lands: a failed put-back must not leave the instance out.
            log.warning("startup_hold_put_back_failed", error=str(exc))
            return False

    def _ready_url_ok(self, deadline: Deadline) -> bool:
        if self.hold.ready_url is None:
            return True
        try:
            status = self.http.get(self.hold.ready_url, timeout=deadline.timeout(5.0)).status_code
        except httpx.HTTPError:
            return False
        return 200 <= status < 300

    def _wait_ready(self) -> bool:
        """Healthy (and the ready URL 2xx) continuously for ``delay`` s; False when preempted."""
        ready_since: float | None = None
        waiting_logged = self.clock.now()
        while True:
            if not self._still_ours() or self.stop.is_set():
                log.warning("startup_hold_yielded", reason="hold taken over or stopping")
                return False
            now = self.clock.now()
            deadline = Deadline.after(self.clock, 6.0)
            if self.app_healthy(deadline) and self._ready_url_ok(deadline):
                if ready_since is None:
                    ready_since = now
                    log.info("startup_app_ready", delay_s=self.hold.delay)
                if now - ready_since >= self.hold.delay:
                    return True
            else:
                ready_since = None
                if now - waiting_logged >= 30.0:
                    waiting_logged = now
                    log.info("startup_hold_waiting", ready_url=self.hold.ready_url)
            self.clock.sleep(0.5)

    def warm_up(self, target: float) -> None:
        """Raise the weight from a low start to ``target``; stop if anyone else changes it."""
        w = self.warmup
        start = min(w.start_weight, target)
        begun = self.clock.now()
        written: float | None = None
        log.info("warmup_started", target=target, duration_s=w.duration, curve=w.curve)
        while not self.stop.is_set() and not self.draining.is_set():
            elapsed = self.clock.now() - begun
            weight = round(warmup_weight(elapsed, w.duration, start, target, w.curve), 4)
            deadline = Deadline.after(self.clock, 3.0)
            try:
                if written is not None:
                    current = self.registry.get_instance(deadline)
                    if current is None:
                        return
                    if abs(current.weight - written) > 1e-3:
                        log.warning("warmup_stopped", reason="weight_changed_by_someone_else")
                        return
                if weight != written:
                    set_weight = getattr(self.registry, "set_weight", None)
                    if set_weight is None:
                        return
                    set_weight(weight, deadline)
                    written = weight
            except AgentError as exc:
                log.warning("warmup_step_failed", error=str(exc))
            self.warmup_progress = min(1.0, elapsed / w.duration)
            if elapsed >= w.duration:
                log.info("warmup_done", weight=target)
                return
            self.clock.sleep(min(w.step, w.duration - elapsed))
        log.info("warmup_stopped", reason="draining" if self.draining.is_set() else "stopping")

    # --- metrics ---

    def metrics(self) -> str:
        lines = [
            "# TYPE prestop_draining gauge",
            f"prestop_draining {int(self.draining.is_set())}",
            "# TYPE prestop_warmup_progress gauge",
            f"prestop_warmup_progress {self.warmup_progress:.3f}",
            "# TYPE prestop_startup_hold gauge",
            f"prestop_startup_hold {int(self.holding)}",
            "# TYPE prestop_stale_disabled_repaired gauge",
            f"prestop_stale_disabled_repaired {int(self.repaired)}",
        ]
        outcome = self.flight.result
        if outcome is not None:
            lines.append("# TYPE prestop_phase_duration_seconds gauge")
            for phase in outcome.phases:
                lines.append(
                    f'prestop_phase_duration_seconds{{phase="{phase.name}",'
                    f'outcome="{phase.outcome}"}} {phase.duration:.3f}'
                )
            confirm, drain = outcome.phase("confirm"), outcome.phase("drain")
            if confirm is not None and "time_to_invisible_s" in confirm.detail:
                lines.append(
                    f"prestop_time_to_invisible_seconds {confirm.detail['time_to_invisible_s']}"
                )
            if drain is not None:
                lines.append(
                    "prestop_requests_after_take_out "
                    f"{drain.detail.get('requests_after_take_out', 0)}"
                )
            label = "degraded" if outcome.degraded else "ok"
            lines.append(f'prestop_last_outcome{{outcome="{label}"}} 1')
        return "\n".join(lines) + "\n"


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode())


def make_server(
    sidecar: Sidecar, host: str, port: int, limits: Limits | None = None
) -> BoundedHTTPServer:
    """The sidecar's HTTP server: route and token come from the request head, no body is read.

    /healthz and /metrics are answered by the server's loop, /readyz by a small pool and an
    authorised /prestop by its own threads, so neither idle nor slow nor unauthenticated clients
    can hold what the hook call needs (see agent/httpserver.py for the limits).
    """
    server: BoundedHTTPServer

    def healthz(_: Request) -> Response:
        return _json(200, {"status": "alive"})

    def readyz(_: Request) -> Response:
        ready, reasons = sidecar.readiness()
        return _json(200 if ready else 503, {"ready": ready, "reasons": reasons})

    def metrics(_: Request) -> Response:
        lines = ["# TYPE prestop_http_refused_total counter"]
        for reason, count in sorted(server.refused_totals().items()):
            lines.append(f'prestop_http_refused_total{{reason="{reason}"}} {count}')
        text = sidecar.metrics() + "\n".join(lines) + "\n"
        return Response(200, text.encode(), "text/plain; version=0.0.4")

    def prestop(_: Request) -> Response:
        joined = sidecar.flight.started
        outcome, error = sidecar.flight.run()
        if outcome is None:
            return _json(500, {"error": type(error).__name__ if error else "no outcome"})
        return _json(200, {**outcome.summary(), "joined": joined})

    routes = {
        "/healthz": Route(healthz),
        "/metrics": Route(metrics),
        "/readyz": Route(readyz, lane="pool"),
        "/prestop": Route(
            prestop,
            methods=frozenset({"GET", "POST"}),
            lane="own",
            authorize=lambda r: sidecar.authorized(r.header(TOKEN_HEADER)),
        ),
    }
    server = BoundedHTTPServer((host, port), routes, limits)
    return server


def serve(sidecar: Sidecar, host: str, port: int, terminated: threading.Event) -> None:
    """Serve until ``terminated`` (SIGTERM), then linger and finish a running drain."""
    # Not ready before the hold has decided: a probe must not pass in the moment between the
    # registration and the take-out. (`prestop ready` runs no start-up: it leaves this off.)
    sidecar.holding = sidecar.hold.enabled
    server = make_server(sidecar, host, port)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    threading.Thread(target=sidecar.start_up, daemon=True).start()
    log.info("sidecar_listening", host=host, port=server.server_address[1])
    terminated.wait()
    sidecar.stop.set()
    log.info("sidecar_terminating", linger_s=sidecar.term_linger)
    # The hook's HTTP call may arrive just after our SIGTERM: wait a moment for it to start.
    end = sidecar.clock.now() + sidecar.term_linger
    while not sidecar.flight.started and sidecar.clock.now() < end:
        sidecar.clock.sleep(0.05)
    if sidecar.flight.started:
        sidecar.flight.run()  # joins: returns when the running sequence has finished
    server.shutdown()
    server.server_close()
    sidecar.close()
    log.info("sidecar_stopped")
