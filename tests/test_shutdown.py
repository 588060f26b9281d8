"""The shutdown seam: the actions say whether the app stopped, from the app's port.

The fast tests answer the port with a probe; the slow ones open real sockets on loopback.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import pytest

from agent.deadline import Deadline
from agent.drain.policy import DrainConfig
from agent.sequence import Deps, Plan, run_drain
from agent.shutdown import (
    ActuatorShutdown,
    AppPort,
    NoShutdown,
    ShutdownAction,
    SignalShutdown,
    Triggered,
    wait_until_stopped,
)
from tests.fakes import FakeAction, FakeClock, FakeRegistry, answering_http


@dataclass
class Probe:
    """The app's port, closed after ``closes_after`` looks."""

    closes_after: int = 0
    looks: int = 0
    port: int = 8080

    def closed(self, deadline: Deadline) -> bool:
        self.looks += 1
        return self.looks > self.closes_after


def test_every_action_asks_its_probe(clock: FakeClock) -> None:
    http = answering_http()
    probe = Probe(closes_after=1)
    actions: list[ShutdownAction] = [
        ActuatorShutdown("http://app/actuator", http, app=probe),
        SignalShutdown("no-such-process", app=probe),
        NoShutdown(probe),
    ]
    deadline = Deadline.after(clock, 5)
    for action in actions:
        probe.looks = 0
        assert action.port == 8080
        assert action.stopped(deadline) is False
        assert action.stopped(deadline) is True
    http.close()


def test_wait_until_stopped_polls_on_the_clock(clock: FakeClock) -> None:
    action = ActuatorShutdown("http://app/actuator", answering_http(), app=Probe(closes_after=3))
    took = wait_until_stopped(action, Deadline.after(clock, 5), clock, interval=0.1)
    assert took == pytest.approx(0.3)


def test_an_app_that_keeps_running_is_reported_at_the_deadline(clock: FakeClock) -> None:
    action = FakeAction(ignores_shutdown=True)
    assert wait_until_stopped(action, Deadline.after(clock, 2), clock) is None
    assert clock.now() == pytest.approx(1002.0, abs=0.11)


@pytest.mark.slow
def test_a_real_port_is_closed_only_once_nothing_listens() -> None:
    clock = FakeClock()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        app = AppPort("127.0.0.1", listener.getsockname()[1])
        assert app.closed(Deadline.after(clock, 2)) is False
    assert app.closed(Deadline.after(clock, 2)) is True


@pytest.mark.slow
def test_the_sequence_confirms_a_real_stop(clock: FakeClock) -> None:
    """End to end on a real socket: the action's trigger closes the port, the sequence sees it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    app = AppPort("127.0.0.1", listener.getsockname()[1])

    class ClosesThePort(NoShutdown):
        def trigger(self, deadline: Deadline) -> Triggered:
            listener.close()
            return Triggered("actuator", "the listener closed")

    plan = Plan(budget=20, drain=DrainConfig(min_wait=1, max_wait=2, quiet_window=1))
    deps = Deps(registry=FakeRegistry(clock), signal=None, action=ClosesThePort(app), clock=clock)
    outcome = run_drain(deps, plan)
    shutdown = outcome.phase("shutdown")
    assert shutdown is not None and shutdown.detail["app_stopped"] is True, outcome.summary()
