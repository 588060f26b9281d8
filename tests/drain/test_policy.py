"""Properties of the pure drain policy (Hypothesis) and a few worked examples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drain.policy import (
    Decision,
    DrainConfig,
    DrainState,
    Sample,
    adaptive_window,
    decide,
    observe,
    quiet_window,
)

configs = st.builds(
    DrainConfig,
    # Durations below a millisecond only test float rounding, not the policy.
    min_wait=st.one_of(st.just(0.0), st.floats(0.001, 20)),
    max_wait=st.floats(0, 120),
    quiet_window=st.one_of(st.none(), st.just(0.0), st.floats(0.001, 10)),
    poll_interval=st.floats(0.05, 2),
    confidence=st.floats(1e-6, 0.5),
    quiet_floor=st.floats(0.0, 2),
    quiet_cap=st.floats(2, 60),
)
rates = st.one_of(st.none(), st.floats(0, 1000))
# A trace: per step, a time increment, whether new requests arrived, and the in-flight count.
steps = st.lists(
    st.tuples(st.floats(0.01, 3), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))),
    min_size=1,
    max_size=60,
)
Trace = list[tuple[float, int, int | None]]
# One decision: the time, the state, the decision, the new requests and the in-flight count.
Step = tuple[float, DrainState, Decision, int, int | None]


def _run(
    config: DrainConfig,
    trace: Trace,
    budget: float,
    rate: float | None = None,
) -> list[Step]:
    start = 0.0
    window = adaptive_window(rate, config)
    state = DrainState.begin(start, start + budget, quiet_window=window)
    now, count = start, 0.0
    # The driver's first sample is taken at the start: it is the baseline of the counter.
    state = observe(state, Sample(now, count, 0.0), now)
    decisions: list[Step] = []
    for dt, new, in_flight in trace:
        now += dt
        count += new
        sample = Sample(now, count, None if in_flight is None else float(in_flight))
        state = observe(state, sample, now)
        d = decide(config, state, now)
        decisions.append((now, state, d, new, in_flight))
        if d.action != "wait":
            break
    return decisions


# The properties run a few dozen examples in the fast tier and hundreds in the slow one.
FAST_EXAMPLES = 40


def tiers(full: int) -> list[Any]:
    return [
        pytest.param(FAST_EXAMPLES, id="fast"),
        pytest.param(full, id="full", marks=pytest.mark.slow),
    ]


@pytest.mark.parametrize("examples", tiers(300))
def test_never_past_deadline_or_cap(examples: int) -> None:
    """Every 'wait' happens before the deadline and max_wait; the policy never sleeps past them."""

    @settings(max_examples=examples, deadline=None)
    @given(configs, steps, st.floats(0.5, 100), rates)
    def holds(config: DrainConfig, trace: Trace, budget: float, rate: float | None) -> None:
        for now, state, d, _, _ in _run(config, trace, budget, rate):
            cap = min(state.deadline, state.started + config.max_wait)
            if d.action == "wait":
                assert now < cap
                assert now + d.sleep <= cap + 1e-9
            if d.action == "give_up":
                assert now >= cap

    holds()


@pytest.mark.parametrize("examples", tiers(300))
def test_never_drained_while_in_flight_or_too_early(examples: int) -> None:
    """Drained only with nothing in flight, after min_wait, and after a full quiet window."""

    @settings(max_examples=examples, deadline=None)
    @given(configs, steps, st.floats(0.5, 100), rates)
    def holds(config: DrainConfig, trace: Trace, budget: float, rate: float | None) -> None:
        for now, state, d, new, in_flight in _run(config, trace, budget, rate):
            if d.action == "drained":
                assert in_flight in (0, None)
                assert state.in_flight in (0.0, None)
                assert now - state.started >= config.min_wait
                window = quiet_window(config, state)
                assert window >= (state.quiet_window if config.quiet_window is None else 0)
                assert new == 0 or window < 1e-3
                assert now - state.quiet_since >= window

    holds()


@pytest.mark.parametrize("examples", tiers(200))
def test_drained_within_one_poll_of_quiet(examples: int) -> None:
    """With no traffic at all, following the policy's sleeps ends within one poll of the rule."""

    @settings(max_examples=examples, deadline=None)
    @given(configs, st.floats(0.5, 100), rates)
    def holds(config: DrainConfig, budget: float, rate: float | None) -> None:
        window = adaptive_window(rate, config)
        state = DrainState.begin(0.0, budget, quiet_window=window)
        now = 0.0
        for _ in range(10_000):
            state = observe(state, Sample(now, 0.0, 0.0), now)
            d = decide(config, state, now)
            if d.action != "wait":
                break
            now += d.sleep if d.sleep > 0 else 0.01
        earliest = max(config.min_wait, window)
        cap = min(budget, config.max_wait)
        if earliest < cap:
            assert d.action == "drained"
            assert now <= earliest + config.poll_interval + 1e-6
        else:
            assert d.action in ("drained", "give_up")

    holds()


def test_unsettled_registry_blocks_drained() -> None:
    """Until the registry change is confirmed, quiet traffic does not count as drained."""
    config = DrainConfig(min_wait=0, max_wait=60, quiet_window=1, poll_interval=0.5)
    state = DrainState.begin(0.0, 100.0, settled=False)
    state = observe(state, Sample(5.0, 0.0, 0.0), 5.0)
    assert decide(config, state, 5.0).reason == "registry_not_settled"


def test_no_signal_waits_to_cap() -> None:
    """A signal that never answers means waiting to max_wait (clamped by the deadline)."""
    config = DrainConfig(min_wait=0, max_wait=10, quiet_window=1, poll_interval=0.5)
    state = observe(DrainState.begin(0.0, 30.0), None, 0.0)
    assert decide(config, state, 5.0).action == "wait"
    assert decide(config, state, 5.0).reason == "no_signal"
    assert decide(config, state, 10.0).action == "give_up"


def test_counter_reset_counts_as_activity() -> None:
    """A counter that goes down (app restarted its metrics) restarts the quiet window."""
    state = DrainState.begin(0.0, 100.0)
    state = observe(state, Sample(1.0, 50.0, 0.0), 1.0)
    state = observe(state, Sample(2.0, 3.0, 0.0), 2.0)
    assert state.quiet_since == 2.0


@pytest.mark.parametrize("examples", tiers(200))
def test_window_shrinks_as_rate_grows(examples: int) -> None:
    """A higher rate never needs a longer silence; the window stays within floor and cap."""

    @settings(max_examples=examples, deadline=None)
    @given(configs, rates, rates)
    def holds(config: DrainConfig, a: float | None, b: float | None) -> None:
        wa, wb = adaptive_window(a, config), adaptive_window(b, config)
        if config.quiet_window is None:
            assert min(config.quiet_floor, config.quiet_cap) <= wa <= config.quiet_cap
            if a is not None and b is not None and 0 < a <= b:
                assert wb <= wa

    holds()


def test_window_examples() -> None:
    """500 req/s is quiet after well under a second; 0.2 req/s is not quiet after 5 s."""
    config = DrainConfig()
    assert adaptive_window(500, config) < 1.0
    assert adaptive_window(0.2, config) > 5.0
    assert adaptive_window(1.0, config) == pytest.approx(6.908, abs=0.01)
    assert adaptive_window(None, config) == config.quiet_cap
    assert adaptive_window(10, DrainConfig(quiet_window=2)) == 2


def test_sparse_late_traffic_needs_a_longer_silence() -> None:
    """When fast consumers have let go and a slow one remains, the window grows to match it."""
    config = DrainConfig(min_wait=0)
    state = DrainState.begin(0.0, 100.0, quiet_window=adaptive_window(100, config))
    state = observe(state, Sample(0.0, 0.0, 0.0), 0.0)
    for i in range(1, 6):  # one request a second from the last consumer still holding us
        state = observe(state, Sample(float(i), float(i), 0.0), float(i))
    assert quiet_window(config, state) > 5.0
    assert decide(config, state, 6.5).action == "wait"


def test_quiet_window_is_compared_without_rounding_early() -> None:
    """Found by hypothesis: 1.0 + 1/3 - 4/3 rounds to 0 although only 1/3 - 1 ulp has passed."""
    config = DrainConfig(min_wait=0.0, max_wait=2.0, quiet_window=1 / 3, poll_interval=1.0)
    state = DrainState(
        started=0.0,
        deadline=2.0,
        settled=True,
        last_requests=1.0,
        quiet_since=1.0,
        in_flight=None,
        good_samples=3,
        failed_samples=0,
        requests_seen=1.0,
        quiet_window=1 / 3,
    )
    now = 4 / 3
    assert now - state.quiet_since < 1 / 3
    assert decide(config, state, now).action == "wait"
