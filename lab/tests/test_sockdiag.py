"""The kernel socket signal: real sockets on loopback, and the counting rules with fakes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from agent.deadline import Deadline, SystemClock
from agent.drain.sockdiag import KernelSocketSignal
from prestop_lab import procs
from prestop_lab.demo import start_app

pytestmark = pytest.mark.slow  # the app lives in another process, as in a pod


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
    assert base is not None
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{app_port}/work?ms=1")
        first = signal.read(dl())
        assert first.requests == base + 1
        client.get(f"http://127.0.0.1:{app_port}/work?ms=1")
        second = signal.read(dl())
        assert second.requests == base + 2
        idle = signal.read(dl())
        assert (idle.requests, idle.in_flight) == (base + 2, 0)
        # Long enough that a read comes while it runs, however slow the machine.
        slow = threading.Thread(
            target=lambda: httpx.get(f"http://127.0.0.1:{app_port}/work?ms=3000", timeout=30)
        )
        slow.start()
        assert procs.wait_for(lambda: signal.read(dl()).in_flight == 1, 30)
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
