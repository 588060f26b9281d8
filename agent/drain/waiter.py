"""The driver that runs the pure drain policy against real signals and a clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from agent.deadline import Clock, Deadline
from agent.drain.policy import (
    Decision,
    DrainConfig,
    DrainState,
    Sample,
    adaptive_window,
    cautious_rate,
    decide,
    observe,
    quiet_window,
)
from agent.drain.signals import READ_FAILURES, ReadFailure, SignalUnavailable, TrafficSignal
from agent.exceptions import DeadlineExceeded
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
    rate_before: float | None = None
    quiet_window: float | None = None


class Knowledge(Protocol):
    """What the consumers themselves say (see :class:`agent.consumers.ConsumerTracker`)."""

    @property
    def knowledge_at(self) -> float | None: ...

    @property
    def forced_fallback(self) -> list[str]: ...

    def poll(self, deadline: Deadline) -> None: ...


MIN_RATE_SPAN = 0.2  # seconds; a shorter baseline says nothing about the rate
MIN_PAUSE = 0.001  # seconds


def take_sample(
    signal: TrafficSignal | None,
    deadline: Deadline,
    clock: Clock,
    on_error: Callable[[ReadFailure], None] | None = None,
) -> Sample | None:
    """One reading, stamped when it was asked for; None when there is no signal or it failed.

    Any error while sampling (not only the :data:`READ_FAILURES`) counts as a failed sample:
    the drain then falls back the way it does for an unreadable signal. Values that are not
    finite numbers are dropped.
    """
    if signal is None:
        return None
    at = clock.now()
    try:
        reading = signal.read(deadline)
        sample = Sample(at, _finite(reading.requests), _finite(reading.in_flight))
    except READ_FAILURES as exc:
        if on_error is not None:
            on_error(exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a broken sample is a failed sample
        log.warning("drain_signal_failed", error_type=type(exc).__name__)
        if on_error is not None:
            on_error(SignalUnavailable(f"{type(exc).__name__} while sampling"))
        return None
    return sample


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else math.nan
        return number if math.isfinite(number) else None
    return None


def rate_between(first: Sample | None, second: Sample | None) -> float | None:
    """A cautious request rate between two samples (see :func:`cautious_rate`)."""
    if first is None or second is None or first.requests is None or second.requests is None:
        return None
    span = second.at - first.at
    if span < MIN_RATE_SPAN or second.requests < first.requests:
        return None
    return cautious_rate(second.requests - first.requests, span)


def _too_close(baseline: Sample | None, sample: Sample | None) -> bool:
    return baseline is not None and sample is not None and sample.at - baseline.at < MIN_RATE_SPAN


def _forced_by(consumers: Knowledge, state: DrainState) -> list[str]:
    if state.contradicted:
        return ["requests arrived after every listed consumer let go"]
    try:
        return consumers.forced_fallback
    except Exception as exc:  # noqa: BLE001 - only a log line's detail
        return [f"unknown ({type(exc).__name__})"]


# Seconds below which a read is not attempted: every signal would refuse it for want of time.
NO_TIME_TO_READ = 0.01


def _result(
    config: DrainConfig,
    state: DrainState,
    decision: Decision,
    start: float,
    rate: float | None,
    now: float,
) -> DrainResult:
    return DrainResult(
        drained=decision.action == "drained",
        reason=decision.reason,
        waited=now - start,
        requests_seen=state.requests_seen,
        good_samples=state.good_samples,
        failed_samples=state.failed_samples,
        rate_before=rate,
        quiet_window=quiet_window(config, state),
    )


def wait_for_drain(
    signal: TrafficSignal | None,
    config: DrainConfig,
    deadline: Deadline,
    clock: Clock,
    *,
    baseline: Sample | None = None,
    consumers: Knowledge | None = None,
) -> DrainResult:
    """Sample until the policy says drained or give up; never past ``deadline``.

    ``baseline`` is a sample taken before the instance was taken out: the request rate since
    then sets the quiet window (see :func:`agent.drain.policy.adaptive_window`).
    """
    start = clock.now()
    state = DrainState.begin(start, deadline.at, quiet_window=adaptive_window(None, config))
    state = replace(state, settle=config.settle)
    rate: float | None = None
    pending = True  # the rate before the take-out is still to be measured
    last_reason = ""
    warned: list[bool] = []  # warn about an unreadable signal once per drain
    contradiction_logged = False

    def failed(exc: ReadFailure) -> None:
        if not warned and signal is not None and not isinstance(exc, DeadlineExceeded):
            log.warning("drain_signal_unavailable", signal=signal.name, error=str(exc))
            warned.append(True)

    while True:
        now = clock.now()
        if deadline.remaining() <= NO_TIME_TO_READ:
            # A read now could only fail for want of time: that is the deadline, not a
            # missing signal (it used to be logged as "no signal answered").
            return _result(config, state, decide(config, state, deadline.at), start, rate, now)
        sample = take_sample(signal, deadline, clock, failed)
        state = observe(state, sample, now)
        if pending:
            # When the take-out and its confirmation were quick, the first sample can be too
            # close to the baseline to say anything: the next one measures from the baseline.
            rate = rate_between(baseline, sample)
            pending = rate is None and _too_close(baseline, sample)
            state = replace(state, quiet_window=adaptive_window(rate, config))
            if not pending:
                log.info(
                    "drain_window",
                    rate_before=None if rate is None else round(rate, 3),
                    quiet_window_s=round(state.quiet_window, 3),
                    adaptive=config.quiet_window is None,
                )
        if consumers is not None and state.knowledge_at is None:
            knowledge: float | None = None
            try:
                consumers.poll(deadline)
                knowledge = consumers.knowledge_at
            except Exception as exc:  # noqa: BLE001 - consumers' news must never end the drain
                log.warning("consumers_poll_failed", error_type=type(exc).__name__)
            state = replace(state, knowledge_at=knowledge)
        if state.contradicted and not contradiction_logged:
            log.warning("consumers_knowledge_contradicted", requests_seen=state.requests_seen)
            contradiction_logged = True
        now = clock.now()
        decision: Decision = decide(config, state, now)
        if decision.action != "wait":
            if consumers is not None and decision.reason == "quiet":
                log.info("drain_fallback_quiet_window", forced_by=_forced_by(consumers, state))
            return _result(config, state, decision, start, rate, now)
        if decision.reason != last_reason:
            log.info("drain_waiting", reason=decision.reason, in_flight=state.in_flight)
            last_reason = decision.reason
        pause = min(decision.sleep, deadline.remaining()) if decision.sleep > 0 else 0.01
        # At least 1 ms: a pause of a few ulps would not move a clock on which `now` is large.
        clock.sleep(max(MIN_PAUSE, pause))
