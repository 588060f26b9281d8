"""`check` and `drain` agree on which traffic signals answer.

They used to disagree in two ways. The drain's last sample, taken as its deadline ran out, had
no time left to read and was logged as ``drain_signal_unavailable``/"no signal answered" right
after ``check`` had found every signal answering. And the kernel signal "answered" for a port
nothing listened on (the app down, or a wrong ``--port``), which is quiet to a drain.
Now both build the same objects (:func:`agent.wiring.signal_components`), the kernel signal
needs the port in the socket table, and running out of time is not a missing signal.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from agent import wiring
from agent.check import app_findings
from agent.config import Config, load
from agent.deadline import Deadline, SystemClock
from agent.drain.policy import DrainConfig
from agent.drain.signals import (
    FirstAvailable,
    Reading,
    SignalUnavailable,
    TrafficSignal,
)
from agent.drain.sockdiag import TCP_LISTEN, CombinedSignal, Conn, KernelSocketSignal
from agent.drain.waiter import wait_for_drain
from agent.exceptions import DeadlineExceeded
from agent.sequence import Deps, Plan, run_drain
from tests.fakes import FakeAction, FakeClock, FakeRegistry


def config(signals: str, port: int = 8080) -> Config:
    env = {
        "PRESTOP_NACOS_ADDR": "nacos:8848",
        "PRESTOP_SERVICE": "orders",
        "POD_IP": "10.0.0.5",
        "SERVER_PORT": str(port),
        "PRESTOP_SIGNALS": signals,
        # Bounds the actuator findings should the test's port ever stop refusing HTTP at once.
        "PRESTOP_HTTP_TIMEOUT": "0.2",
    }
    return load({}, env)


def leaves(signal: Any) -> list[Any]:
    inner = getattr(signal, "signals", None)
    if isinstance(signal, CombinedSignal | FirstAvailable) and inner is not None:
        return [leaf for s in inner for leaf in leaves(s)]
    return [signal]


def describe(signal: Any) -> tuple[Any, ...]:
    return (
        type(signal).__name__,
        getattr(signal, "url", None),
        getattr(signal, "base", None),
        getattr(signal, "port", None),
        getattr(signal, "require_port", None),
    )


@pytest.mark.parametrize(
    "signals", ["auto", "kernel", "prometheus", "actuator", "prometheus,kernel", "actuator,kernel"]
)
def test_check_reads_exactly_what_the_drain_reads(signals: str) -> None:
    cfg = config(signals)
    with httpx.Client() as http:
        checked = [describe(s) for s in wiring.check_signals(cfg, http)]
        drained = [describe(s) for s in leaves(wiring.build_signal(cfg, http))]
    assert checked == drained


def test_auto_prefers_prometheus_then_actuator_plus_kernel() -> None:
    with httpx.Client() as http:
        built = wiring.build_signal(config("auto"), http)
    assert isinstance(built, CombinedSignal)
    first, kernel = built.signals
    assert isinstance(first, FirstAvailable)
    assert [s.name for s in first.signals] == ["prometheus", "actuator"]
    assert isinstance(kernel, KernelSocketSignal) and kernel.require_port


# --- the kernel signal's readiness: the port must be in the socket table ---


def dl() -> Deadline:
    return Deadline.after(SystemClock(), 5)


def test_kernel_signal_without_the_port_is_unavailable() -> None:
    table: list[Conn] = []
    signal = KernelSocketSignal(8080, list_sockets=lambda: table, own_inodes=set, require_port=True)
    with pytest.raises(SignalUnavailable, match="nothing listens on port 8080"):
        signal.read(dl())
    table.append(Conn(8080, "0.0.0.0", 0, 5, 0, 0, 0, state=TCP_LISTEN))
    assert signal.read(dl()) == Reading(0.0, 0.0)  # listening, idle: quiet, not missing
    table.append(Conn(8080, "10.0.0.9", 5000, 6, 100, 5, 10))
    assert signal.read(dl()) == Reading(1.0, 1.0)


@pytest.fixture(name="listening_port")
def fixture_listening_port() -> Iterator[int]:
    """A port in the socket table that closes every connection: HTTP fails at once, no waiting."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def close_each() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:  # the socket was closed: the test is over
                    return
                conn.close()

        closer = threading.Thread(target=close_each, daemon=True)
        closer.start()
        yield server.getsockname()[1]
        server.shutdown(socket.SHUT_RDWR)
    closer.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_says(cfg: Config) -> str:
    with httpx.Client() as http:
        findings = app_findings(cfg, http, dl(), wiring.check_signals(cfg, http), lambda _name: [1])
    return next(f.message for f in findings if f.name == "signals")


def _drain_reads(cfg: Config) -> bool:
    with httpx.Client() as http:
        try:
            wiring.build_signal(cfg, http).read(dl())
        except SignalUnavailable:
            return False
    return True


def test_check_and_drain_agree_on_a_real_socket_table(listening_port: int) -> None:
    """Real netlink: a listening port answers in both; a closed one in neither."""
    up = config("kernel", listening_port)
    assert _check_says(up) == "answered: kernel"
    assert _drain_reads(up)
    down = config("kernel", _free_port())
    assert "nothing listens on port" in _check_says(down)
    assert not _drain_reads(down)


# --- running out of time is not a missing signal ---


def test_no_time_left_is_its_own_error() -> None:
    expired = Deadline(SystemClock(), 0.0)
    kernel = KernelSocketSignal(8080, list_sockets=list, own_inodes=set)
    with pytest.raises(DeadlineExceeded):
        kernel.read(expired)
    with pytest.raises(DeadlineExceeded):
        CombinedSignal([kernel, kernel]).read(expired)
    with pytest.raises(DeadlineExceeded):
        FirstAvailable([kernel]).read(expired)


def test_combined_error_names_each_reason() -> None:
    class Down:
        name = "down"

        def read(self, deadline: Deadline) -> Reading:
            raise SignalUnavailable("HTTP 404 from /actuator/prometheus")

    with pytest.raises(SignalUnavailable) as err:
        CombinedSignal([Down()]).read(dl())
    assert not isinstance(err.value, DeadlineExceeded)
    assert "down: HTTP 404 from /actuator/prometheus" in str(err.value)


class DeadlineAware:
    """Answers like the real signals: refuses a read with (almost) no time left."""

    name = "aware"

    def __init__(self) -> None:
        self.refused = 0

    def read(self, deadline: Deadline) -> Reading:
        if deadline.remaining() <= 0.01:
            self.refused += 1
            deadline.left_for("a read")
        return Reading(requests=0.0, in_flight=0.0)


def test_a_drain_that_runs_into_its_deadline_does_not_report_a_missing_signal(
    clock: FakeClock,
) -> None:
    """Quiet window longer than the time left: the drain ends at the deadline, quietly."""
    signal = DeadlineAware()
    drain = DrainConfig(min_wait=1, max_wait=60, quiet_window=30, poll_interval=0.25)
    with capture_logs() as logs:
        result = wait_for_drain(signal, drain, Deadline.after(clock, 5), clock)
    assert result.reason == "deadline"
    assert result.failed_samples == 0 and result.good_samples > 0
    assert signal.refused == 0
    assert not [e for e in logs if e["event"] == "drain_signal_unavailable"]


def test_no_time_for_the_drain_is_said_as_such(clock: FakeClock) -> None:
    """A registry step that overruns its deadline (a call that ignored its timeout) and eats
    the drain's share too: `drain_no_time`, not "no signal"."""

    class SlowRegistry(FakeRegistry):
        def visible_to_consumers(self, deadline: Deadline) -> bool:
            self.clock.advance(deadline.remaining() + 10)  # past the drain's time as well
            return True

    registry = SlowRegistry(clock)
    signal: TrafficSignal = DeadlineAware()
    deps = Deps(registry=registry, signal=signal, action=FakeAction(), clock=clock)
    plan = Plan(budget=20, drain=DrainConfig(1, 60, 2, 0.25), confirm_timeout=30)
    with capture_logs() as logs:
        run_drain(deps, plan)
    names = [e["event"] for e in logs]
    assert "drain_no_time" in names
    assert "drain_without_signal" not in names
    assert "drain_signal_unavailable" not in names


def test_registry_steps_that_use_all_their_time_leave_the_drain_its_share(
    clock: FakeClock,
) -> None:
    """Time sharing: confirm uses everything it is given, and the drain still has min_wait
    and reads its signal (neither `drain_no_time` nor "no signal")."""

    class SlowRegistry(FakeRegistry):
        def visible_to_consumers(self, deadline: Deadline) -> bool:
            self.clock.advance(deadline.remaining())  # consumers never drop it in time
            return True

    registry = SlowRegistry(clock)
    signal = DeadlineAware()
    deps = Deps(registry=registry, signal=signal, action=FakeAction(), clock=clock)
    plan = Plan(budget=12, drain=DrainConfig(1, 60, 2, 0.25), confirm_timeout=30)
    with capture_logs() as logs:
        outcome = run_drain(deps, plan)
    names = [e["event"] for e in logs]
    drain = outcome.phase("drain")
    assert drain is not None and drain.duration >= plan.drain.min_wait
    assert "drain_no_time" not in names and "drain_without_signal" not in names
    assert signal.refused == 0
