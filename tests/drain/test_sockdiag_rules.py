"""The kernel signal's counting rules and the combined signal, on fake sockets."""

from __future__ import annotations

import pytest

from agent.addresses import plain_address
from agent.deadline import Deadline, SystemClock
from agent.drain.signals import Reading, SignalUnavailable
from agent.drain.sockdiag import CombinedSignal, Conn, KernelSocketSignal


def dl() -> Deadline:
    return Deadline.after(SystemClock(), 5)


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


def test_own_scrape_of_a_jvm_is_left_out() -> None:
    """A JVM's server socket shows an IPv4 client as ``::ffff:127.0.0.1``: our own scrape is
    still recognised as ours (found on the real Spring Boot provider, which counted one arrival
    per scrape and never looked quiet)."""
    ours = {7}
    conns = [
        Conn(41000, "127.0.0.1", 8080, 7, 500, 1, 2, local="127.0.0.1"),  # our client socket
        Conn(8080, "::ffff:127.0.0.1", 41000, 9, 100, 1, 2, 10, local="::ffff:127.0.0.1"),
    ]
    signal = KernelSocketSignal(8080, list_sockets=lambda: conns, own_inodes=lambda: ours)
    assert signal.read(dl()) == Reading(0.0, 0.0)
    conns[1] = Conn(8080, "::ffff:127.0.0.1", 41000, 9, 200, 1, 2, 10, local="::ffff:127.0.0.1")
    assert signal.read(dl()) == Reading(0.0, 0.0)


def test_plain_address() -> None:
    assert plain_address("::ffff:127.0.0.1") == "127.0.0.1"
    assert plain_address("::ffff:10.1.2.3") == "10.1.2.3"
    assert plain_address("fd00:0:0:0:0:0:0:1") == "fd00::1"
    assert plain_address("10.0.0.1") == "10.0.0.1"
    assert plain_address("not-an-ip") == "not-an-ip"
