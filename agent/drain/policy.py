"""The drain policy: samples over time in, "keep waiting", "drained" or "give up" out.

Pure: no clock, no I/O, no logging. The driver in :mod:`agent.drain.waiter` feeds it samples
and sleeps as told. The rule (Dubbo's quiet period, made explicit and bounded):

* drained when the registry change is settled, ``min_wait`` has passed since the drain began,
  nothing is in flight, and no new request has arrived for the quiet window;
* or, sooner, on knowledge: every subscriber has let go of us (``knowledge_at``, see
  :mod:`agent.consumers`), then ``settle`` seconds passed with nothing new arriving and nothing
  in flight. A request counted after that settle means someone the registry did not list still
  routes to us: the knowledge is void and the quiet window rules again;
* give up at ``max_wait`` after the start or at the deadline, whichever is first;
* with no usable traffic signal at all, wait until that cap (we cannot know better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from agent.config.defaults import seconds_default


@dataclass(frozen=True)
class DrainConfig:
    """The defaults are the options' (Nacos profile), from their one declaration."""

    min_wait: float = seconds_default("min_wait")
    max_wait: float = seconds_default("max_wait")
    quiet_window: float | None = None  # None: derive it from the request rate
    poll_interval: float = seconds_default("poll_interval")
    confidence: float = seconds_default("confidence")  # accepted chance that silence was luck
    quiet_floor: float = seconds_default("quiet_floor")
    quiet_cap: float = seconds_default("quiet_cap")
    # After every consumer let go: for requests already on the wire.
    settle: float = seconds_default("consumer_settle")


def adaptive_window(rate: float | None, config: DrainConfig) -> float:
    """How long a silence must last before it is not luck, at ``rate`` requests per second.

    While consumers still send us traffic, arrivals are roughly Poisson at the rate measured
    before the take-out, so a silence of ``w`` seconds happens by chance with probability
    ``exp(-rate * w)``. Requiring that to be at most ``confidence`` gives
    ``w = ln(1 / confidence) / rate``, clamped to ``[quiet_floor, quiet_cap]``: 500 req/s needs
    14 ms (floor: 0.3 s), 1 req/s 6.9 s, 0.2 req/s 34.5 s (cap: 30 s). An unknown or zero rate
    gets the cap: with no traffic seen, silence proves nothing.
    """
    if config.quiet_window is not None:
        return config.quiet_window
    if rate is None or rate <= 0:
        return config.quiet_cap
    window = math.log(1.0 / config.confidence) / rate
    return min(config.quiet_cap, max(config.quiet_floor, window))


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
    quiet_window: float = 3.0  # from the rate before the take-out
    activity: tuple[tuple[float, float], ...] = ()  # recent (at, requests_seen) with new traffic
    knowledge_at: float | None = None  # when every consumer had let go of us
    settle: float = seconds_default("consumer_settle")  # DrainConfig.settle, for observe()
    contradicted: bool = False  # traffic arrived after that: someone unlisted routes to us

    @classmethod
    def begin(
        cls, now: float, deadline: float, *, settled: bool = True, quiet_window: float = 3.0
    ) -> DrainState:
        return cls(
            started=now,
            deadline=deadline,
            settled=settled,
            quiet_since=now,
            quiet_window=quiet_window,
        )


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
            seen = state.requests_seen + (delta if delta > 0 else sample.requests)
            new = replace(
                new,
                quiet_since=sample.at,
                requests_seen=seen,
                activity=(*state.activity, (sample.at, seen))[-RECENT_ACTIVITY:],
                contradicted=state.contradicted
                or (_after_settle(state, sample.at) and _arrivals(state, delta)),
            )
        new = replace(new, last_requests=sample.requests)
    return new


def _after_settle(state: DrainState, at: float) -> bool:
    return state.knowledge_at is not None and at > state.knowledge_at + state.settle


def _arrivals(state: DrainState, delta: float) -> bool:
    """Whether a rise of the request count must include a new request: the count grows when a
    request is answered, so requests in flight at the last sample may explain it."""
    if delta <= 0 or state.in_flight is None:
        return True  # a reset, or nothing known about what was in flight: assume the worst
    return delta > state.in_flight


RECENT_ACTIVITY = 16
RATE_Z = 1.28  # one-sided 90 % lower bound


def cautious_rate(events: float, span: float) -> float:
    """A Poisson rate's 90 % lower bound: a few events by chance must not shorten the window.

    ``n - 1.28 * sqrt(n)`` keeps 300 events at 278 but turns 2 into 0.2.
    """
    if span <= 0 or events <= 0:
        return 0.0
    return max(0.0, events - RATE_Z * math.sqrt(events)) / span


def recent_rate(state: DrainState) -> float | None:
    """The rate of the traffic still arriving, from the last few samples that saw new requests.

    Consumers let go one by one, so the traffic left late in a drain is often much sparser
    than before the take-out; the silence that proves it has stopped must grow accordingly.
    """
    if len(state.activity) < 3:
        return None
    (t0, n0), (t1, n1) = state.activity[0], state.activity[-1]
    return cautious_rate(n1 - n0, t1 - t0)


def quiet_window(config: DrainConfig, state: DrainState) -> float:
    """The silence required now: the larger of the before-take-out and the recent windows."""
    if config.quiet_window is not None:
        return config.quiet_window
    recent = recent_rate(state)
    if recent is None:
        return state.quiet_window
    return max(state.quiet_window, adaptive_window(recent, config))


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
    # Elapsed time first, then the comparison: `since + window - now` can round to 0 a few
    # ulps before the window has really passed.
    min_until = config.min_wait - (now - state.started)
    if state.knowledge_at is not None and not state.contradicted:
        # Every consumer let go: only requests already on the wire can still come.
        settled_at = max(state.knowledge_at, state.quiet_since)
        settle_until = config.settle - (now - settled_at)
        if min_until <= 0 and settle_until <= 0:
            return Decision("drained", "consumers_let_go")
        reason = "min_wait" if min_until > settle_until else "settle"
        return Decision("wait", reason, max(0.0, min(poll, max(min_until, settle_until))))
    quiet_until = quiet_window(config, state) - (now - state.quiet_since)
    if state.last_requests is None:
        quiet_until = 0.0  # only in-flight is known: quiet means nothing in flight
    if min_until <= 0 and quiet_until <= 0:
        return Decision("drained", "quiet")
    reason = "min_wait" if min_until > quiet_until else "quiet_window"
    # Sleep to the moment the condition could hold, but sample at least every poll interval.
    return Decision("wait", reason, max(0.0, min(poll, max(min_until, quiet_until))))
