"""The kernel socket signal: real sockets on loopback, and the counting rules with fakes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from agent.deadline import Deadline, SystemClock
from agent.drain.signals import Reading, SignalUnavailable
from agent.drain.sockdiag import CombinedSignal, Conn, KernelSocketSignal
from prestop_lab import procs
from prestop_lab.demo import start_app


def dl() -> Deadline:
    return Deadline.after(SystemClock(), 5)


@pytest.fixture(name="app_port")
def fixture_app_port() -> Iterator[int]:
    port = procs.free_port()
    app = start_app(None, port, 1)  # the server lives in another process, as in a pod
    yield port
    app.kill()


def test_arrivals_keepalive_and_in_flight(app_port: int) -> None:
    """New requests count, also on a kept-alive connection; idle is quiet; slow is in flight."""
    signal = KernelSocketSignal(app_port, exclude_own=False)
    base = signal.read(dl()).requests
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{app_port}/work?ms=1")
        first = signal.read(dl())
        assert first.requests == base + 1
        client.get(f"http://127.0.0.1:{app_port}/work?ms=1")
        second = signal.read(dl())
        assert second.requests == base + 2
        idle = signal.read(dl())
        assert (idle.requests, idle.in_flight) == (base + 2, 0)
        slow = threading.Thread(
            target=lambda: httpx.get(f"http://127.0.0.1:{app_port}/work?ms=1500")
        )
        slow.start()
        assert procs.wait_for(lambda: signal.read(dl()).in_flight == 1, 1.2)
        slow.join()
        assert signal.read(dl()).in_flight == 0


def test_own_connections_are_left_out(app_port: int) -> None:
    """The agent's own requests to the port (its metric scrapes) are not traffic."""
    signal = KernelSocketSignal(app_port)
    base = signal.read(dl()).requests
    with httpx.Client() as client:
        for _ in range(3):
            client.get(f"http://127.0.0.1:{app_port}/actuator/prometheus")
            assert signal.read(dl()).requests == base


def test_counting_rules_with_fake_sockets() -> None:
    """The counter only grows: new connections with data and more bytes on known ones."""
    conns: list[Conn] = []
    signal = KernelSocketSignal(80, list_sockets=lambda: conns, own_inodes=set)
    assert signal.read(dl()) == Reading(0.0, 0.0)
    conns[:] = [Conn(80, "10.0.0.1", 5000, 1, 100, 5, 10)]  # request being answered
    assert signal.read(dl()) == Reading(1.0, 1.0)
    conns[:] = [Conn(80, "10.0.0.1", 5000, 1, 100, 50, 10)]  # answered, idle
    assert signal.read(dl()) == Reading(1.0, 0.0)
    conns[:] = [Conn(80, "10.0.0.1", 5000, 1, 250, 1, 40), Conn(81, "x", 1, 2, 9, 1, 9)]
    assert signal.read(dl()) == Reading(2.0, 1.0)  # other ports do not count
    conns[:] = []
    assert signal.read(dl()).requests == 2.0


def test_combined_keeps_last_good_readings() -> None:
    """A failing component keeps its last reading; all failing is unavailable."""

    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.fail = False

        def read(self, deadline: Deadline) -> Reading:
            if self.fail:
                raise SignalUnavailable("down")
            return Reading(10.0, 2.0)

    a, b = Flaky(), Flaky()
    combined = CombinedSignal([a, b])
    assert combined.read(dl()) == Reading(20.0, 2.0)
    a.fail = True
    assert combined.read(dl()) == Reading(20.0, 2.0)
    b.fail = True
    with pytest.raises(SignalUnavailable):
        combined.read(dl())
