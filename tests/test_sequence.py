"""The shutdown sequence with fakes for the registry, the signal and the app (no sockets)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from agent.drain.policy import DrainConfig
from agent.drain.signals import TrafficSignal
from agent.exceptions import InstanceNotFound, RegistryUnavailable
from agent.sequence import Deps, DrainRegistry, Outcome, Phase, Plan, run_drain
from agent.shutdown import ShutdownAction
from tests.fakes import FakeAction, FakeClock, FakeRegistry, FakeSignal


def _deps(
    clock: FakeClock,
    *,
    registry: DrainRegistry | None = None,
    signal: TrafficSignal | None = None,
    action: ShutdownAction | None = None,
) -> Deps:
    return Deps(
        registry=FakeRegistry(clock) if registry is None else registry,
        signal=FakeSignal(clock, traffic_until=clock.now() + 4) if signal is None else signal,
        action=FakeAction() if action is None else action,
        clock=clock,
    )


def _phase(outcome: Outcome, name: str) -> Phase:
    phase = outcome.phase(name)
    assert phase is not None
    return phase


PLAN = Plan(
    budget=25, drain=DrainConfig(min_wait=1, max_wait=60, quiet_window=2, poll_interval=0.5)
)


def test_happy_path(clock: FakeClock) -> None:
    """Take out, confirm, drain until quiet, shut down, confirm stopped: exit 0."""
    start = clock.now()
    deps = _deps(clock)
    with capture_logs() as logs:
        outcome = run_drain(deps, PLAN)
    assert outcome.exit_code == 0
    assert [p.name for p in outcome.phases] == ["take_out", "confirm", "drain", "shutdown"]
    assert _phase(outcome, "confirm").detail["time_to_invisible_s"] == pytest.approx(0.6, abs=0.01)
    drain = outcome.phase("drain")
    assert drain is not None and drain.detail["drained"] is True
    # Traffic stopped 4 s after the start; quiet for 2 s more → drained about 6 s in.
    assert clock.now() - start == pytest.approx(6.1, abs=0.6)
    assert _phase(outcome, "shutdown").detail["app_stopped"] is True
    assert outcome.duration <= PLAN.budget
    events = [e["event"] for e in logs]
    assert events.index("instance_taken_out") < events.index("instance_invisible")
    assert events.index("instance_invisible") < events.index("app_shutdown_triggered")


def test_registry_down_fails_open(clock: FakeClock) -> None:
    """When the registry cannot be reached the app is still drained and stopped: exit 3."""
    registry = FakeRegistry(clock, fail_with=RegistryUnavailable("connection refused"))
    action = FakeAction()
    outcome = run_drain(_deps(clock, registry=registry, action=action), PLAN)
    assert outcome.exit_code == 3
    assert _phase(outcome, "take_out").outcome == "degraded"
    assert _phase(outcome, "confirm").outcome == "skipped"
    assert action.triggered == 1
    assert outcome.duration <= PLAN.budget
    assert registry.calls.count("take_out") >= 2  # transient errors are retried


def test_instance_not_found_is_not_retried(clock: FakeClock) -> None:
    """An unknown instance is reported once; nothing is retried or written."""
    registry = FakeRegistry(clock, fail_with=InstanceNotFound("not registered"))
    outcome = run_drain(_deps(clock, registry=registry), PLAN)
    assert outcome.exit_code == 3
    assert registry.calls == ["take_out"]
    assert _phase(outcome, "take_out").detail["reason"] == "instance_not_found"


def test_app_ignoring_shutdown_is_reported(clock: FakeClock) -> None:
    """An app whose port stays open after the shutdown request is reported (exit 3)."""
    action = FakeAction(ignores_shutdown=True)
    with capture_logs() as logs:
        outcome = run_drain(_deps(clock, action=action), PLAN)
    assert outcome.exit_code == 3
    shutdown = outcome.phase("shutdown")
    assert shutdown is not None and shutdown.detail["app_stopped"] is False
    assert any(e["event"] == "app_not_stopped" for e in logs)
    assert outcome.duration <= PLAN.budget


def test_endless_traffic_is_bounded_by_the_budget(clock: FakeClock) -> None:
    """Traffic that never stops ends the drain in time to shut the app down in budget."""
    signal = FakeSignal(clock, traffic_until=1e9)
    plan = Plan(budget=20, drain=DrainConfig(1, 60, 2, 0.5), shutdown_timeout=5)
    outcome = run_drain(_deps(clock, signal=signal), plan)
    drain = outcome.phase("drain")
    assert drain is not None and drain.outcome == "timeout"
    assert _phase(outcome, "shutdown").detail["app_stopped"] is True
    assert outcome.duration <= plan.budget


def test_unreadable_metrics_wait_max(clock: FakeClock) -> None:
    """Without metrics the drain waits --max-wait (clamped by the budget) and says so."""
    signal = FakeSignal(clock, broken=True)
    plan = Plan(budget=25, drain=DrainConfig(1, 8, 2, 0.5))
    with capture_logs() as logs:
        outcome = run_drain(_deps(clock, signal=signal), plan)
    drain = outcome.phase("drain")
    assert drain is not None
    assert drain.detail["reason"] == "max_wait"
    assert drain.duration == pytest.approx(8, abs=0.6)
    assert any(e["event"] == "drain_without_signal" for e in logs)


def test_registry_clean_up_runs_only_after_the_app_stopped(clock: FakeClock) -> None:
    """A registry that cleans up (Eureka's cancel) is called after the port closed, last."""
    registry = FakeRegistry(clock, cleans_up_after_stop=True)
    outcome = run_drain(_deps(clock, registry=registry), PLAN)
    assert [p.name for p in outcome.phases][-2:] == ["shutdown", "deregister"]
    assert registry.calls[-1] == "after_stop"
    assert _phase(outcome, "deregister").outcome == "ok"
    assert outcome.exit_code == 0


def test_no_clean_up_while_the_app_still_runs(clock: FakeClock) -> None:
    """The app ignores the shutdown: the lease must not be cancelled (it would re-register UP)."""
    registry = FakeRegistry(clock, cleans_up_after_stop=True)
    action = FakeAction(ignores_shutdown=True)
    outcome = run_drain(_deps(clock, registry=registry, action=action), PLAN)
    assert "after_stop" not in registry.calls
    deregister = outcome.phase("deregister")
    assert deregister is not None and deregister.outcome == "skipped"
    assert outcome.exit_code == 3


def test_no_clean_up_phase_for_registries_without_one(clock: FakeClock) -> None:
    """Nacos needs nothing after the stop: no extra phase, no call."""
    registry = FakeRegistry(clock)
    outcome = run_drain(_deps(clock, registry=registry), PLAN)
    assert outcome.phase("deregister") is None
    assert "after_stop" not in registry.calls
