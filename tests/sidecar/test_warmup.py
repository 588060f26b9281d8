"""The weight warm-up on fakes: its curve, and yielding to someone else's weight."""

from __future__ import annotations

import pytest

from agent.deadline import Deadline
from agent.registry import InstanceState
from agent.sidecar import SidecarState, WarmUp, WarmupConfig, warmup_weight
from tests.fakes import FakeClock


class WeightRegistry:
    """Records weights; ``meddle_at`` simulates an operator changing the weight."""

    def __init__(self, clock: FakeClock, meddle_at: float | None = None) -> None:
        self.clock = clock
        self.weight = 4.0
        self.writes: list[tuple[float, float]] = []
        self.meddle_at = meddle_at

    def get_instance(self, deadline: Deadline) -> InstanceState:
        if self.meddle_at is not None and self.clock.now() >= self.meddle_at:
            self.weight = 7.0
        return InstanceState("127.0.0.1", 1, "DEFAULT", self.weight, {}, True)

    def set_weight(self, weight: float, deadline: Deadline) -> None:
        self.weight = weight
        self.writes.append((self.clock.now(), weight))


def _warm(registry: WeightRegistry, clock: FakeClock, state: SidecarState) -> None:
    config = WarmupConfig(duration=10, start_weight=0.4, curve="quadratic", step=1)
    WarmUp(registry, config, clock, state).run(target=4.0)


def test_warmup_follows_the_quadratic_curve() -> None:
    """The weight rises from the start weight to the target along (t/T)^2, then stays."""
    clock, state = FakeClock(0.0), SidecarState()
    registry = WeightRegistry(clock)
    _warm(registry, clock, state)
    assert registry.writes[0] == (0.0, 0.4)
    for t, w in registry.writes:
        assert w == pytest.approx(0.4 + 3.6 * (t / 10) ** 2, abs=1e-3)
    assert registry.writes[-1] == (10.0, 4.0)
    assert state.warmup_progress == 1.0
    assert warmup_weight(5, 10, 0, 4, "linear") == 2.0


def test_warmup_never_overrides_someone_elses_weight() -> None:
    """If the weight changes under it, the warm-up stops and leaves it."""
    clock = FakeClock(0.0)
    registry = WeightRegistry(clock, meddle_at=3.5)
    _warm(registry, clock, SidecarState())
    assert registry.weight == 7.0
    assert all(t < 3.5 for t, _ in registry.writes)


def test_a_drain_stops_the_warmup() -> None:
    """A drain beginning mid-warm-up ends it: no weight is written after the take-out."""
    clock, state = FakeClock(0.0), SidecarState()
    registry = WeightRegistry(clock)
    clock.on_sleep.append(lambda now: state.draining.set() if now >= 3 else None)
    _warm(registry, clock, state)
    assert registry.writes and all(t < 3 for t, _ in registry.writes)
    assert state.warmup_progress < 1.0
