"""The driver that runs the pure drain policy against real signals and a clock."""

from __future__ import annotations

from dataclasses import dataclass

from agent.deadline import Clock, Deadline
from agent.drain.policy import Decision, DrainConfig, DrainState, Sample, decide, observe
from agent.drain.signals import SignalUnavailable, TrafficSignal
from agent.logs import get_logger

log = get_logger()


@dataclass(frozen=True)
class DrainResult:
    drained: bool
    reason: str
    waited: float
    requests_seen: float
    good_samples: int
    failed_samples: int


def wait_for_drain(
    signal: TrafficSignal | None,
    config: DrainConfig,
    deadline: Deadline,
    clock: Clock,
) -> DrainResult:
    """Sample until the policy says drained or give up; never past ``deadline``."""
    start = clock.now()
    state = DrainState.begin(start, deadline.at)
    last_reason = ""
    warned = False
    while True:
        now = clock.now()
        sample: Sample | None = None
        if signal is not None:
            try:
                reading = signal.read(deadline)
                sample = Sample(now, reading.requests, reading.in_flight)
            except SignalUnavailable as exc:
                if not warned:
                    log.warning("drain_signal_unavailable", signal=signal.name, error=str(exc))
                    warned = True
        state = observe(state, sample, now)
        now = clock.now()
        decision: Decision = decide(config, state, now)
        if decision.action != "wait":
            return DrainResult(
                drained=decision.action == "drained",
                reason=decision.reason,
                waited=now - start,
                requests_seen=state.requests_seen,
                good_samples=state.good_samples,
                failed_samples=state.failed_samples,
            )
        if decision.reason != last_reason:
            log.info("drain_waiting", reason=decision.reason, in_flight=state.in_flight)
            last_reason = decision.reason
        clock.sleep(min(decision.sleep, deadline.remaining()) if decision.sleep > 0 else 0.01)
