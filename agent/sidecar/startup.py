"""Start-up work: wait for the registration, then hold it out until the app is ready, or repair
a stale disable. Who holds the instance is read from and written to the hold record, so an
operator's ``prestop down`` and this pod's drain are left alone."""

from __future__ import annotations

from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError, InstanceNotFound
from agent.holdstate import Hold
from agent.logs import get_logger
from agent.registry import InstanceState
from agent.sidecar.readiness import AppHealth
from agent.sidecar.seams import SidecarRegistry
from agent.sidecar.settings import StartupHold
from agent.sidecar.state import HoldRecord, SidecarState

log = get_logger()


class StartUp:
    def __init__(
        self,
        registry: SidecarRegistry,
        app: AppHealth,
        clock: Clock,
        state: SidecarState,
        hold: StartupHold,
        record: HoldRecord,
    ) -> None:
        self.registry = registry
        self.app = app
        self.clock = clock
        self.state = state
        self.hold = hold
        self.record = record

    def run(self, app_start_timeout: float) -> InstanceState | None:
        """The registered instance, in service; None: left out (or never seen)."""
        try:
            return self._hold_or_repair(app_start_timeout)
        finally:
            self.state.holding = False

    def _wait_registered(self, app_start_timeout: float) -> InstanceState | None:
        """The instance once registered; with the hold on, without waiting for the app's health
        (every poll the instance is visible and not yet held is a chance for a cold request)."""
        end = self.clock.now() + app_start_timeout
        interval = self.hold.poll if self.hold.enabled else 1.0
        state = self.state
        while not state.stop.is_set() and not state.draining.is_set() and self.clock.now() < end:
            deadline = Deadline.after(self.clock, 3.0)
            if self.hold.enabled or self.app.healthy(deadline):
                try:
                    found = self.registry.get_instance(deadline)
                except AgentError as exc:
                    log.info("startup_registry_unavailable", error=str(exc))
                    found = None
                if found is not None:
                    return found
            self.clock.sleep(interval)
        return None

    def _hold_or_repair(self, app_start_timeout: float) -> InstanceState | None:
        found = self._wait_registered(app_start_timeout)
        if found is None or self.state.draining.is_set():
            return None
        prior = self.record.file.read()
        if prior is not None and prior.holder == "operator":
            log.warning("operator_hold_kept", since=prior.since, reason=prior.reason)
            return None
        if prior is not None and prior.holder == "drain" and prior.pod == self.record.pod:
            log.warning("drain_hold_kept", since=prior.since)
            return None
        if prior is not None:
            # Ours to finish: a predecessor's start-up hold, or a drain of an earlier pod.
            log.info("hold_state_inherited", holder=prior.holder, pod=prior.pod)
        if self.hold.enabled:
            return found if self._hold_until_ready(found) else None
        if found.enabled is False:
            self._repair(found)
        elif prior is not None:
            self.record.clear()
        return found

    def _repair(self, found: InstanceState) -> None:
        # The app has just started and registered, yet the instance is out of service: on
        # Nacos an ops record left by the previous pod on this IP:port (kept ~60 s and
        # revived on re-registration, alibaba/nacos#6295, #14606); on Eureka a predecessor's
        # OUT_OF_SERVICE override on the same instance id; or this sidecar's predecessor's
        # start-up hold. See docs/eureka.md#stale-override-after-a-restart.
        try:
            self.registry.put_back(Deadline.after(self.clock, 5.0))
            self.state.repaired = True
            self.record.clear()
            log.warning("stale_disabled_repaired", instance=f"{found.ip}:{found.port}")
        except AgentError as exc:
            log.error("stale_disabled_repair_failed", error=str(exc))

    def _still_ours(self) -> bool:
        """False once someone else owns the hold (an operator's down or up, a drain)."""
        if self.state.draining.is_set():
            return False
        if self.record.file.path is None:
            return True
        current: Hold | None = self.record.file.read()
        return (
            current is not None and current.holder == "startup" and current.pod == self.record.pod
        )

    def _hold_until_ready(self, found: InstanceState) -> bool:
        """Take the instance out, wait until ready, put it back. True: it is back in."""
        begun = self.clock.now()
        self.state.holding = True
        # Recorded before the write: a sidecar killed between the two leaves a record that
        # makes its successor finish the hold rather than keep an instance out for nobody.
        self.record.write("startup", "held until the app is ready")
        try:
            while not self._still_ours() or not self._take_out_for_hold():
                if not self._still_ours() or self.state.stop.is_set():
                    log.warning("startup_hold_yielded", reason="hold taken over")
                    return False
                self.clock.sleep(1.0)
            log.info(
                "startup_hold_started",
                instance=f"{found.ip}:{found.port}",
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
            self.state.holding = False
        self.state.hold_seconds = round(self.clock.now() - begun, 3)
        self.record.clear()
        log.info("startup_hold_released", held_s=self.state.hold_seconds)
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
        return self.hold.ready_url is None or self.app.answers_2xx(self.hold.ready_url, deadline)

    def _wait_ready(self) -> bool:
        """Healthy (and the ready URL 2xx) continuously for ``delay`` s; False when preempted."""
        ready_since: float | None = None
        waiting_logged = self.clock.now()
        while True:
            if not self._still_ours() or self.state.stop.is_set():
                log.warning("startup_hold_yielded", reason="hold taken over or stopping")
                return False
            now = self.clock.now()
            deadline = Deadline.after(self.clock, 6.0)
            if self.app.healthy(deadline) and self._ready_url_ok(deadline):
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
