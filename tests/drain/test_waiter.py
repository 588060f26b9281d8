"""The drain loop: the rate before the take-out, even when the take-out was instant."""

from __future__ import annotations

from structlog.testing import capture_logs

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


class FakeKnowledge:
    """Every consumer has let go from ``at`` on (clock time); None: never."""

    def __init__(self, clock: FakeClock, at: float | None) -> None:
        self.clock, self.at = clock, at
        self.polls = 0

    @property
    def knowledge_at(self) -> float | None:
        return self.at if self.at is not None and self.clock.now() >= self.at else None

    @property
    def forced_fallback(self) -> list[str]:
        return [] if self.knowledge_at is not None else ["10.0.0.9:8081 (HTTP 404)"]

    def poll(self, deadline: Deadline) -> None:
        self.polls += 1


LOW_RATE = DrainConfig(min_wait=0.0, max_wait=60, poll_interval=0.25, quiet_cap=30, settle=0.2)


def _low_rate_drain(
    clock: FakeClock, knowledge: FakeKnowledge | None, **signal: float
) -> tuple[float, str]:
    """1 req/s until 1 s after the start: the quiet window alone would be its 30 s cap."""
    start = clock.now()
    fake = FakeSignal(clock, traffic_until=start + signal.get("until", 1.0), rate=1.0)
    fake.in_flight_until = start + signal.get("in_flight", 0.0)
    deadline = Deadline.after(clock, 60)
    result = wait_for_drain(fake, LOW_RATE, deadline, clock, consumers=knowledge)
    assert result.drained
    return clock.now() - start, result.reason


def test_knowledge_ends_a_low_rate_drain_after_the_settle(clock: FakeClock) -> None:
    waited, reason = _low_rate_drain(clock, FakeKnowledge(clock, clock.now() + 1.5))
    assert reason == "consumers_let_go"
    assert 1.7 <= waited <= 1.7 + LOW_RATE.poll_interval


def test_knowledge_still_waits_for_requests_in_flight(clock: FakeClock) -> None:
    waited, reason = _low_rate_drain(clock, FakeKnowledge(clock, clock.now() + 1.0), in_flight=4.0)
    assert reason == "consumers_let_go" and waited >= 4.0


def test_knowledge_still_waits_for_min_wait(clock: FakeClock) -> None:
    config = DrainConfig(min_wait=5.0, max_wait=60, settle=0.2)
    fake = FakeSignal(clock, traffic_until=clock.now(), rate=1.0)
    start = clock.now()
    result = wait_for_drain(
        fake, config, Deadline.after(clock, 60), clock, consumers=FakeKnowledge(clock, start)
    )
    assert result.reason == "consumers_let_go" and clock.now() - start >= 5.0


def test_without_knowledge_the_quiet_window_rules(clock: FakeClock) -> None:
    with capture_logs() as logs:
        waited, reason = _low_rate_drain(clock, FakeKnowledge(clock, None))
    assert reason == "quiet" and waited >= 30.0
    fallback = [e for e in logs if e["event"] == "drain_fallback_quiet_window"]
    assert fallback[0]["forced_by"] == ["10.0.0.9:8081 (HTTP 404)"]


def test_traffic_after_everyone_let_go_voids_the_knowledge(clock: FakeClock) -> None:
    """Requests keep coming 3 s after the last listed consumer let go: someone unlisted routes
    to us, so the drain must not end on the settle."""
    config = DrainConfig(min_wait=2.0, max_wait=60, settle=0.2, quiet_cap=30)
    fake = FakeSignal(clock, traffic_until=clock.now() + 4.0, rate=5.0)
    start = clock.now()
    with capture_logs() as logs:
        result = wait_for_drain(
            fake, config, Deadline.after(clock, 60), clock, consumers=FakeKnowledge(clock, start)
        )
    assert result.reason == "quiet" and clock.now() - start > 4.0
    events = [e["event"] for e in logs]
    assert "consumers_knowledge_contradicted" in events
    fallback = [e for e in logs if e["event"] == "drain_fallback_quiet_window"]
    assert "after every listed consumer let go" in fallback[0]["forced_by"][0]


def test_a_request_answered_after_the_settle_is_no_contradiction(clock: FakeClock) -> None:
    """The count grows when a request is answered: one that was in flight when everyone let go
    and is answered later is not someone unlisted routing to us."""
    config = DrainConfig(min_wait=0.0, max_wait=60, settle=0.2, quiet_cap=30)
    start = clock.now()
    fake = FakeSignal(clock, traffic_until=start + 3.0, rate=1.0)  # 0.25 per sample
    fake.in_flight_until = start + 3.0
    with capture_logs() as logs:
        result = wait_for_drain(
            fake,
            config,
            Deadline.after(clock, 60),
            clock,
            consumers=FakeKnowledge(clock, start + 0.5),
        )
    assert result.reason == "consumers_let_go"
    assert 3.0 <= clock.now() - start <= 3.0 + config.settle + config.poll_interval + 0.01
    assert "consumers_knowledge_contradicted" not in [e["event"] for e in logs]
