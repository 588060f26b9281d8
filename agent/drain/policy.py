"""The drain policy: samples over time in, "keep waiting", "drained" or "give up" out.

Pure: no clock, no I/O, no logging. The driver in :mod:`agent.drain.waiter` feeds it samples
and sleeps as told. The rule (Dubbo's quiet period, made explicit and bounded):

* drained when the registry change is settled, ``min_wait`` has passed since the drain began,
  nothing is in flight, and no new request has arrived for ``quiet_window`` seconds;
* give up at ``max_wait`` after the start or at the deadline, whichever is first;
* with no usable traffic signal at all, wait until that cap (we cannot know better).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class DrainConfig:
    min_wait: float = 2.0
    max_wait: float = 60.0
    quiet_window: float = 3.0
    poll_interval: float = 0.5


@dataclass(frozen=True)
class Sample:
    """One reading of the traffic signals. ``None`` fields are not known from this signal."""

    at: float
    requests: float | None  # cumulative count of business requests served
    in_flight: float | None  # requests being served right now


@dataclass(frozen=True)
class Decision:
    action: Literal["wait", "drained", "give_up"]
    reason: str
    sleep: float = 0.0


@dataclass(frozen=True)
class DrainState:
    started: float
    deadline: float  # absolute, on the same clock as the samples
    settled: bool = True  # registry change confirmed visible (or not applicable)
    last_requests: float | None = None
    quiet_since: float = 0.0  # when the request count last changed
    in_flight: float | None = None
    good_samples: int = 0
    failed_samples: int = 0
    requests_seen: float = 0.0  # requests counted since the drain began

    @classmethod
    def begin(cls, now: float, deadline: float, *, settled: bool = True) -> DrainState:
        return cls(started=now, deadline=deadline, settled=settled, quiet_since=now)


def observe(state: DrainState, sample: Sample | None, now: float) -> DrainState:
    """Fold one sample (None: the signal failed this time) into the state."""
    if sample is None:
        # An unreadable sample says nothing about quiet; treat it as possible activity.
        return replace(state, failed_samples=state.failed_samples + 1, in_flight=None)
    new = replace(state, good_samples=state.good_samples + 1, in_flight=sample.in_flight)
    if sample.requests is not None:
        if state.last_requests is not None and sample.requests != state.last_requests:
            delta = sample.requests - state.last_requests
            # A counter going down means the app restarted its metrics: count it as activity.
            new = replace(
                new,
                quiet_since=sample.at,
                requests_seen=state.requests_seen + (delta if delta > 0 else sample.requests),
            )
        new = replace(new, last_requests=sample.requests)
    return new


def settle(state: DrainState, now: float) -> DrainState:
    """The registry change became visible: the quiet window counts from no earlier than now."""
    return replace(state, settled=True, quiet_since=max(state.quiet_since, now))


def decide(config: DrainConfig, state: DrainState, now: float) -> Decision:
    """What to do at ``now``, given everything observed so far."""
    cap = min(state.deadline, state.started + config.max_wait)
    if now >= state.deadline:
        return Decision("give_up", "deadline")
    if now >= cap:
        return Decision("give_up", "max_wait")
    until_cap = cap - now
    poll = min(config.poll_interval, until_cap)

    if state.good_samples == 0 and state.failed_samples > 0:
        return Decision("wait", "no_signal", min(until_cap, max(poll, config.poll_interval)))
    if not state.settled:
        return Decision("wait", "registry_not_settled", poll)
    if state.in_flight is None and state.last_requests is None:
        return Decision("wait", "signal_unreadable", poll)
    if state.in_flight is not None and state.in_flight > 0:
        return Decision("wait", "in_flight", poll)
    min_until = state.started + config.min_wait - now
    quiet_until = state.quiet_since + config.quiet_window - now
    if state.last_requests is None:
        quiet_until = 0.0  # only in-flight is known: quiet means nothing in flight
    if min_until <= 0 and quiet_until <= 0:
        return Decision("drained", "quiet")
    reason = "min_wait" if min_until > quiet_until else "quiet_window"
    # Sleep to the moment the condition could hold, but sample at least every poll interval.
    return Decision("wait", reason, max(0.0, min(poll, max(min_until, quiet_until))))
