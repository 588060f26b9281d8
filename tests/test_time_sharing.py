"""Time sharing: a slow registry cannot starve the drain.

The registry phases (take-out with its retries, then confirm) must end by
``before_shutdown − (min_wait + poll_interval)``, so the drain always gets its minimum and one
more poll, and the app is still stopped within the budget. Checked with the fault lab's
in-memory Nacos and Eureka on a fake clock: every registry call answers just under the 3 s
request timeout (a take-out needs 5–7 such calls), or never (each one times out and is retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

import pytest

from agent.deadline import Deadline
from agent.exceptions import RegistryUnavailable
from agent.registry import TakeOut
from agent.sequence import Deps, Plan, run_drain
from tests.fakes import FakeAction, FakeClock, FakeRegistry
from tests.faultlab import PLAN, World, run_world

# The smallest budget `prestop drain` accepts for PLAN's timeouts (check_drain_budget):
# --http-timeout 3 + --min-wait 1 + --shutdown-timeout 3 + 0.5 s to exit.
MIN_BUDGET = 3 + PLAN.drain.min_wait + PLAN.shutdown_timeout + 0.5


DRAINS: list[tuple[float, str]] = []  # (drain phase duration, run) per slow-registry run


@pytest.fixture(scope="module", autouse=True)
def _report_shortest() -> Iterator[None]:
    """With ``-s``: the shortest drain a slow registry left."""
    yield
    if DRAINS:
        took, name = min(DRAINS)
        print(
            f"\ntime sharing: {len(DRAINS)} slow-registry runs, shortest drain {took:.2f} s "
            f"(--min-wait {PLAN.drain.min_wait:g} s) in {name}"
        )


@pytest.mark.parametrize("budget", [PLAN.budget, MIN_BUDGET], ids=["budget20", "budget7.5"])
@pytest.mark.parametrize("delay", [2.9, 10.0], ids=["answers_in_2.9s", "always_times_out"])
@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_a_slow_registry_leaves_the_drain_its_minimum(
    clock: FakeClock, registry: Literal["nacos", "eureka"], delay: float, budget: float
) -> None:
    """Every registry call is slow: the drain still runs for at least ``min_wait`` and ends
    drained (the app is quiet), the app is stopped, and the run stays within the budget."""
    plan = replace(PLAN, budget=budget)
    world = World(clock, registry_kind=registry, registry_delay=delay)
    run = run_world(world, plan=plan)
    assert run.error is None and run.summary is not None
    phases = run.summary["phases"]
    drain = phases["drain"]
    DRAINS.append((drain["duration_s"], f"{registry}, {delay:g} s per call, budget {budget:g} s"))
    assert drain["duration_s"] >= plan.drain.min_wait, phases
    assert drain["drained"] is True, phases
    assert world.stopped and phases["shutdown"]["outcome"] == "ok", phases
    assert run.duration <= plan.budget
    if delay < 3 and budget == PLAN.budget:
        # Every call answers in time: the write landed and was answered, so the take-out is
        # done even though the read-back after it had no time left.
        assert phases["take_out"]["outcome"] == "ok", phases
    registry_time = phases["take_out"]["duration_s"] + phases["confirm"]["duration_s"]
    keep = plan.shutdown_timeout + plan.drain.min_wait + plan.drain.poll_interval + 0.5
    assert registry_time <= plan.budget - keep + 1e-6, phases


def test_a_registry_that_uses_all_the_time_it_is_given(clock: FakeClock) -> None:
    """Take-out burns whatever its deadline allows, then fails: the drain keeps its share."""

    class Greedy(FakeRegistry):
        def take_out(self, deadline: Deadline) -> TakeOut:
            self.calls.append("take_out")
            clock.advance(deadline.remaining())
            raise RegistryUnavailable("answered too late")

    world = World(clock)
    plan = Plan(budget=12, drain=replace(PLAN.drain, min_wait=2, quiet_window=2))
    deps = Deps(
        registry=Greedy(clock),
        signal=None,
        action=FakeAction(on_trigger=lambda: setattr(world, "stopped", True)),
        clock=clock,
    )
    start = clock.now()
    outcome = run_drain(deps, plan)
    drain = outcome.phase("drain")
    assert drain is not None and drain.duration >= plan.drain.min_wait, outcome.summary()
    assert world.stopped and clock.now() - start <= plan.budget
