"""The shutdown sequence, read top to bottom like the runbook.

take the instance out → confirm consumers no longer see it → wait for traffic to drain (and,
when configured, tell each consumer to let go; see :mod:`agent.consumers`) → ask the app to
stop → confirm it stopped. One Deadline bounds everything. The registry steps
fail open: whatever happens there, the app is still drained and stopped (exit 3, degraded).

Time sharing: the registry phases (take-out with its retries, then confirm) share one deadline,
``min_wait + poll_interval`` before the drain's own end (which is ``--shutdown-timeout`` before
the budget's). A registry that answers every call just under the timeout, or never, can use
the rest but never that: the drain always gets at least ``min_wait`` and the app is still
stopped in time.

Every phase is a bulkhead: any ``Exception`` raised inside one (not only the agent's own) is
logged as ``phase_failed`` and ends that phase degraded; the next phases still run, so the app
is stopped even when every earlier phase blew up, and the summary is always strict JSON.
This module knows only the protocols, never httpx, sockets or Nacos: :class:`DrainRegistry` is
what it needs of a registry adapter, and the shutdown action both stops the app and says
whether it stopped (:class:`agent.shutdown.ShutdownAction`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.config.defaults import seconds_default
from agent.consumers import ConsumerTracker
from agent.deadline import Clock, Deadline
from agent.drain.policy import DrainConfig
from agent.drain.signals import TrafficSignal
from agent.drain.waiter import take_sample, wait_for_drain
from agent.exceptions import AgentError, DeadlineExceeded, InstanceNotFound, ShutdownError
from agent.logs import get_logger, json_safe, redact
from agent.registry import TakeOut
from agent.retrying import call_with_retries
from agent.shutdown import ShutdownAction, wait_until_stopped

log = get_logger()

CONFIRM_INTERVAL = 0.2
CLEANUP_RESERVE = 1.0  # seconds kept after the app stopped for the registry's clean-up
ERROR_CHARS = 200  # an error message in the summary or a log line is cut to this length

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|token|accesstoken|secret|authorization)\b(\s*[=:]\s*)\S+"
)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free message for ``exc`` (URL credentials and tokens are masked)."""
    text = _USERINFO.sub("***@", redact(str(exc)))
    text = _SECRET_PARAM.sub(r"\1\2***", text).replace("\n", " ")
    return text[:ERROR_CHARS]


@dataclass
class Phase:
    name: str
    outcome: str = "ok"  # ok | skipped | degraded | failed
    duration: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    phases: list[Phase] = field(default_factory=list)
    duration: float = 0.0
    budget: float = 0.0

    @property
    def degraded(self) -> bool:
        return any(p.outcome in ("degraded", "failed") for p in self.phases)

    @property
    def exit_code(self) -> int:
        return 3 if self.degraded else 0

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def summary(self) -> dict[str, Any]:
        """The run as strict-JSON-safe values (NaN and ±Infinity become null)."""
        out: dict[str, Any] = {
            "outcome": "degraded" if self.degraded else "ok",
            "exit_code": self.exit_code,
            "duration_s": round(self.duration, 3),
            "budget_s": self.budget,
            "phases": {
                p.name: {"outcome": p.outcome, "duration_s": round(p.duration, 3), **p.detail}
                for p in self.phases
            },
        }
        safe: dict[str, Any] = json_safe(out)
        return safe


class DrainRegistry(Protocol):
    """What the sequence needs of a registry adapter."""

    # True when after_stop() has work to do (Eureka's cancel); the sequence then adds a phase.
    @property
    def cleans_up_after_stop(self) -> bool: ...

    def take_out(self, deadline: Deadline) -> TakeOut: ...

    def visible_to_consumers(self, deadline: Deadline) -> bool: ...

    def after_stop(self, deadline: Deadline) -> str | None: ...


@dataclass(frozen=True)
class Plan:
    budget: float
    drain: DrainConfig
    confirm_timeout: float = seconds_default("confirm_timeout")  # the Nacos profile's
    shutdown_timeout: float = seconds_default("shutdown_timeout")


@dataclass
class Deps:
    registry: DrainRegistry | None
    signal: TrafficSignal | None
    action: ShutdownAction
    clock: Clock
    consumers: ConsumerTracker | None = None


def run_drain(deps: Deps, plan: Plan) -> Outcome:
    """Run the whole preStop sequence within ``plan.budget`` seconds."""
    clock = deps.clock
    started = clock.now()
    deadline = Deadline.for_budget(clock, plan.budget)
    before_shutdown = deadline.minus(plan.shutdown_timeout)  # time kept for the app to stop
    # Time sharing: however slow the registry, take-out and confirm end in time to leave the
    # drain its minimum plus one poll (the sample that can end it).
    registry_until = before_shutdown.minus(plan.drain.min_wait + plan.drain.poll_interval)
    outcome = Outcome(budget=plan.budget)
    # The traffic rate before the take-out decides how long a silence must be (the quiet window).
    baseline = take_sample(deps.signal, before_shutdown.sub(plan.drain.poll_interval * 4), clock)
    if deps.signal is not None:
        log.info("drain_signals", signals=deps.signal.name, baseline_ok=baseline is not None)

    # Eureka cancels its lease once the app stopped: a phase of its own, and time kept for it.
    cleans_up = deps.registry is not None and deps.registry.cleans_up_after_stop
    # Each phase below is a bulkhead (see _phase): these are what a phase that blew up leaves.
    taken_out = False
    stopped = False

    with _phase(outcome, "take_out", clock) as p:
        taken_out = _take_out(deps.registry, registry_until, p)

    with _phase(outcome, "confirm", clock) as p:
        if taken_out and deps.registry is not None:
            _confirm_invisible(deps.registry, registry_until.sub(plan.confirm_timeout), clock, p)
        else:
            p.outcome = "skipped"

    with _phase(outcome, "drain", clock) as p:
        result = wait_for_drain(
            deps.signal,
            plan.drain,
            before_shutdown,
            clock,
            baseline=baseline,
            consumers=deps.consumers if taken_out else None,
        )
        # Running out of time is reported but not "degraded": exit 3 means the registry failed.
        p.outcome = "ok" if result.drained else "timeout"
        if result.good_samples == 0 and result.failed_samples == 0:
            # Nothing was read because nothing could be: the registry steps used the time.
            log.warning("drain_no_time", waited_s=round(result.waited, 3))
        elif result.good_samples == 0:
            log.warning("drain_without_signal", waited_s=round(result.waited, 3))
        p.detail.update(
            drained=result.drained,
            reason=result.reason,
            requests_after_take_out=result.requests_seen,
            rate_before=None if result.rate_before is None else round(result.rate_before, 3),
            quiet_window_s=None if result.quiet_window is None else round(result.quiet_window, 3),
            signal=deps.signal.name if deps.signal is not None else None,
        )
        if deps.consumers is not None and taken_out:
            p.detail["consumers"] = deps.consumers.summary()

    with _phase(outcome, "shutdown", clock) as p:
        reserve = CLEANUP_RESERVE if cleans_up else 0
        stopped = _shut_down(deps, deadline.minus(reserve), p, clock)

    if cleans_up:
        with _phase(outcome, "deregister", clock) as p:
            _after_stop(deps.registry if taken_out else None, stopped, deadline, p)

    outcome.duration = clock.now() - started
    return outcome


def _take_out(registry: DrainRegistry | None, deadline: Deadline, p: Phase) -> bool:
    if registry is None:
        p.outcome = "skipped"
        return False
    try:
        result = call_with_retries(
            lambda: registry.take_out(deadline),
            deadline,
            on_retry=lambda n, exc: log.warning(
                "registry_retry", attempt=n, error=describe_error(exc)
            ),
        )
    except InstanceNotFound as exc:
        p.outcome, p.detail["error"] = "degraded", describe_error(exc)
        p.detail["reason"] = "instance_not_found"
        log.warning("instance_not_found", error=describe_error(exc))
        return False
    except AgentError as exc:
        # Fail open: the app must still be drained and stopped.
        p.outcome, p.detail["error"] = "degraded", describe_error(exc)
        p.detail["reason"] = type(exc).__name__
        log.error("take_out_failed", error=describe_error(exc), error_type=type(exc).__name__)
        return False
    p.detail.update(
        method=result.method,
        server_version=result.server_version,
        weight=result.before.weight,
        already_out=result.already_out,
        write_unconfirmed=result.write_unconfirmed,
    )
    log.info(
        "instance_taken_out",
        method=result.method,
        weight_before=result.before.weight,
        weight_after=None if result.after is None else result.after.weight,
        already_out=result.already_out,
        write_unconfirmed=result.write_unconfirmed,
    )
    return True


def _confirm_invisible(registry: DrainRegistry, deadline: Deadline, clock: Clock, p: Phase) -> None:
    start = clock.now()
    last_error = ""
    while True:
        try:
            if not registry.visible_to_consumers(deadline):
                p.detail["time_to_invisible_s"] = round(clock.now() - start, 3)
                log.info("instance_invisible", time_to_invisible_s=p.detail["time_to_invisible_s"])
                return
        except AgentError as exc:
            last_error = describe_error(exc)
        if deadline.remaining() <= CONFIRM_INTERVAL:
            p.outcome = "degraded"
            p.detail["error"] = last_error or "consumers still see the instance"
            log.warning("instance_still_visible", waited_s=round(clock.now() - start, 3))
            return
        clock.sleep(CONFIRM_INTERVAL)


def _shut_down(deps: Deps, deadline: Deadline, p: Phase, clock: Clock) -> bool:
    """Trigger the app's shutdown; True once the action saw it stopped."""
    try:
        triggered = deps.action.trigger(deadline)
    except (ShutdownError, DeadlineExceeded) as exc:
        p.outcome, p.detail["error"] = "failed", describe_error(exc)
        log.error("app_shutdown_failed", error=describe_error(exc))
        return False
    p.detail.update(how=triggered.how, detail=triggered.detail)
    log.info("app_shutdown_triggered", how=triggered.how, detail=triggered.detail)
    if triggered.how == "none":
        p.outcome = "skipped"
        return False
    stopped_after = wait_until_stopped(deps.action, deadline, clock)
    p.detail["app_stopped"] = stopped_after is not None
    if stopped_after is None:
        p.outcome = "degraded"
        p.detail["error"] = f"app still accepts connections on port {deps.action.port}"
        log.error("app_not_stopped", port=deps.action.port)
        return False
    p.detail["stopped_after_s"] = round(stopped_after, 3)
    log.info("app_stopped", stopped_after_s=round(stopped_after, 3))
    return True


def _after_stop(
    registry: DrainRegistry | None, stopped: bool, deadline: Deadline, p: Phase
) -> None:
    """The registry's clean-up (Eureka: cancel the lease), only once the app is really gone.

    Cancelling while the app runs would be undone by its next heartbeat, which re-registers it
    UP with the override erased: the instance would come back into rotation.
    """
    if registry is None or not stopped:
        p.outcome = "skipped"
        p.detail["reason"] = "not taken out" if registry is None else "app not confirmed stopped"
        return
    try:
        result = registry.after_stop(deadline)
    except AgentError as exc:
        p.outcome, p.detail["error"] = "degraded", describe_error(exc)
        log.error("deregister_failed", error=describe_error(exc))
        return
    if result is None:
        p.outcome = "skipped"
        p.detail["reason"] = "nothing to do for this registry"
        return
    p.detail["result"] = result
    log.info("deregistered", result=result)


@contextmanager
def _phase(outcome: Outcome, name: str, clock: Clock) -> Iterator[Phase]:
    """Time one phase and report it the same way as every other.

    A bulkhead: any ``Exception`` from the phase's body is logged (type and a secret-free
    message) and ends the phase degraded instead of the run; ``BaseException`` (Ctrl-C,
    SystemExit) still propagates.
    """
    phase = Phase(name)
    start = clock.now()
    try:
        yield phase
    except Exception as exc:  # noqa: BLE001 - a bulkhead: any error ends this phase only
        if phase.outcome not in ("degraded", "failed"):
            phase.outcome = "degraded"
        phase.detail.update(error_type=type(exc).__name__, error=describe_error(exc))
        log.error(
            "phase_failed",
            phase=name,
            error_type=type(exc).__name__,
            error=describe_error(exc),
        )
    finally:
        phase.duration = clock.now() - start
        outcome.phases.append(phase)
        log.info(
            "phase_done",
            phase=name,
            outcome=phase.outcome,
            duration_s=round(phase.duration, 3),
        )
