"""Hand-written fakes for the sequence's seams (no mocks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from agent.deadline import Deadline
from agent.drain.signals import Reading, SignalUnavailable
from agent.exceptions import AgentError
from agent.registry import InstanceState, TakeOut
from agent.shutdown import Triggered


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or advance() is called)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self.on_sleep: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.t += seconds
        for hook in self.on_sleep:
            hook(self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeRegistry:
    """A registry whose consumers stop seeing the instance ``invisible_after`` s after take-out
    (what the sequence needs of one: :class:`agent.sequence.DrainRegistry`)."""

    clock: FakeClock
    invisible_after: float = 0.5
    fail_with: AgentError | None = None
    taken_out_at: float | None = None
    calls: list[str] = field(default_factory=list)
    name: str = "fake"

    def take_out(self, deadline: Deadline) -> TakeOut:
        self.calls.append("take_out")
        if self.fail_with is not None:
            raise self.fail_with
        self.taken_out_at = self.clock.now()
        state = InstanceState("10.0.0.5", 8080, "DEFAULT", 3.0, {"k": "v"}, True)
        return TakeOut(state, state, "2.5.1", "PATCH /v1/ns/instance")

    def visible_to_consumers(self, deadline: Deadline) -> bool:
        self.calls.append("visible")
        if self.taken_out_at is None:
            return True
        return self.clock.now() - self.taken_out_at < self.invisible_after

    cleans_up_after_stop: bool = False

    def after_stop(self, deadline: Deadline) -> str | None:
        self.calls.append("after_stop")
        return "cancelled" if self.cleans_up_after_stop else None


@dataclass
class FakeSignal:
    """Traffic that keeps arriving until ``traffic_until`` on the fake clock, then stops."""

    clock: FakeClock
    traffic_until: float = 0.0
    rate: float = 10.0
    in_flight_until: float = 0.0
    broken: bool = False
    name: str = "fake"

    def read(self, deadline: Deadline) -> Reading:
        if self.broken:
            raise SignalUnavailable("broken")
        now = self.clock.now()
        count = self.rate * min(now, self.traffic_until)
        in_flight = 1.0 if now < self.in_flight_until else 0.0
        return Reading(requests=count, in_flight=in_flight)


@dataclass
class FakeAction:
    """Records the trigger (and runs ``on_trigger``); the app is stopped once triggered, unless
    it ``ignores_shutdown``."""

    on_trigger: Callable[[], None] = lambda: None
    ignores_shutdown: bool = False
    triggered: int = 0
    name: str = "fake"
    port: int = 8080

    def trigger(self, deadline: Deadline) -> Triggered:
        self.triggered += 1
        self.on_trigger()
        return Triggered("actuator", "fake")

    def stopped(self, deadline: Deadline) -> bool:
        return self.triggered > 0 and not self.ignores_shutdown


@dataclass
class FakeSidecarRegistry:
    """One instance as the sidecar sees it: registered or not, in service or out."""

    registered: bool = True
    enabled: bool = True
    weight: float = 2.0
    writes: list[str] = field(default_factory=list)
    name: str = "fake"

    def _state(self) -> InstanceState:
        return InstanceState("10.0.0.7", 8080, "DEFAULT", self.weight, {}, self.enabled)

    def get_instance(self, deadline: Deadline) -> InstanceState | None:
        return self._state() if self.registered else None

    def take_out(self, deadline: Deadline) -> TakeOut:
        before, self.enabled = self._state(), False
        self.writes.append("take_out")
        return TakeOut(before, self._state(), "2.5.1", "PATCH /v1/ns/instance")

    def put_back(self, deadline: Deadline) -> TakeOut:
        before, self.enabled = self._state(), True
        self.writes.append("put_back")
        return TakeOut(before, self._state(), "2.5.1", "PATCH /v1/ns/instance")

    def serving(self, deadline: Deadline) -> bool:
        return self.registered and self.enabled


def answering_http(status: int = 200) -> httpx.Client:
    """An HTTP client whose every request is answered ``status`` in-process (no socket)."""
    return httpx.Client(transport=httpx.MockTransport(lambda _request: httpx.Response(status)))
