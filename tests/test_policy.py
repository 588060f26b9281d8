"""Properties of the pure drain policy (Hypothesis) and a few worked examples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drain.policy import DrainConfig, DrainState, Sample, decide, observe

configs = st.builds(
    DrainConfig,
    # Durations below a millisecond only test float rounding, not the policy.
    min_wait=st.one_of(st.just(0.0), st.floats(0.001, 20)),
    max_wait=st.floats(0, 120),
    quiet_window=st.one_of(st.just(0.0), st.floats(0.001, 10)),
    poll_interval=st.floats(0.05, 2),
)
# A trace: per step, a time increment, whether new requests arrived, and the in-flight count.
steps = st.lists(
    st.tuples(st.floats(0.01, 3), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))),
    min_size=1,
    max_size=60,
)


def _run(config: DrainConfig, trace: list[tuple[float, int, int | None]], budget: float):
    start = 0.0
    state = DrainState.begin(start, start + budget)
    now, count = start, 0.0
    # The driver's first sample is taken at the start: it is the baseline of the counter.
    state = observe(state, Sample(now, count, 0.0), now)
    decisions = []
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


@settings(max_examples=300, deadline=None)
@given(configs, steps, st.floats(0.5, 100))
def test_never_past_deadline_or_cap(config: DrainConfig, trace, budget: float) -> None:
    """Every 'wait' happens before the deadline and max_wait; the policy never sleeps past them."""
    for now, state, d, _, _ in _run(config, trace, budget):
        cap = min(state.deadline, state.started + config.max_wait)
        if d.action == "wait":
            assert now < cap
            assert now + d.sleep <= cap + 1e-9
        if d.action == "give_up":
            assert now >= cap


@settings(max_examples=300, deadline=None)
@given(configs, steps, st.floats(0.5, 100))
def test_never_drained_while_in_flight_or_too_early(config: DrainConfig, trace, budget) -> None:
    """Drained only with nothing in flight, after min_wait, and after a full quiet window."""
    for now, state, d, new, in_flight in _run(config, trace, budget):
        if d.action == "drained":
            assert in_flight in (0, None)
            assert state.in_flight in (0.0, None)
            assert now - state.started >= config.min_wait
            assert new == 0 or config.quiet_window == 0
            assert now - state.quiet_since >= config.quiet_window


@settings(max_examples=200, deadline=None)
@given(configs, st.floats(0.5, 100))
def test_drained_within_one_poll_of_quiet(config: DrainConfig, budget: float) -> None:
    """With no traffic at all, following the policy's sleeps ends within one poll of the rule."""
    state = DrainState.begin(0.0, budget)
    now = 0.0
    for _ in range(10_000):
        state = observe(state, Sample(now, 0.0, 0.0), now)
        d = decide(config, state, now)
        if d.action != "wait":
            break
        now += d.sleep if d.sleep > 0 else 0.01
    earliest = max(config.min_wait, config.quiet_window)
    cap = min(budget, config.max_wait)
    if earliest < cap:
        assert d.action == "drained"
        assert now <= earliest + config.poll_interval + 1e-6
    else:
        assert d.action in ("drained", "give_up")


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
