"""The drain loop: the rate before the take-out, even when the take-out was instant."""

from __future__ import annotations

from agent.deadline import Deadline
from agent.drain.policy import DrainConfig
from agent.drain.waiter import take_sample, wait_for_drain
from tests.fakes import FakeClock, FakeSignal


def test_rate_is_measured_even_when_the_first_sample_is_too_close(clock: FakeClock) -> None:
    """Baseline and first sample 10 ms apart (a fast Eureka confirm): the next sample gives the
    rate, so the quiet window is the adaptive one, not the cap."""
    signal = FakeSignal(clock, traffic_until=clock.now() + 3, rate=20.0)
    config = DrainConfig(min_wait=0.5, max_wait=60, poll_interval=0.25, quiet_cap=30)
    deadline = Deadline.after(clock, 60)
    baseline = take_sample(signal, deadline, clock)
    clock.sleep(0.01)
    result = wait_for_drain(signal, config, deadline, clock, baseline=baseline)
    assert result.rate_before is not None
    assert result.rate_before > 5  # a cautious (90 % lower-bound) estimate of 20 req/s
    assert result.drained
    assert result.quiet_window is not None and result.quiet_window < 2
    assert result.waited < 6  # traffic stopped at 3 s: not the 30 s cap
