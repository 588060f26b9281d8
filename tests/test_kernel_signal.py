"""The kernel socket signal: real sockets on loopback, and the counting rules on canned records."""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import pytest

from agent.deadline import Deadline, SystemClock
from agent.drain.kernel import (
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    KernelSocketSignal,
    NetlinkSockDiag,
    TcpInfo,
    TcpSocket,
)
from agent.drain.signals import Reading, SignalUnavailable
from tests.fakes import FakeClock

OK, WHY = KernelSocketSignal.available()
needs_netlink = pytest.mark.skipif(not OK, reason=f"netlink sock_diag unavailable: {WHY}")

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def dl() -> Deadline:
    return Deadline.after(SystemClock(), 5)


# --- real sockets -------------------------------------------------------------------------------


class Server:
    """A tiny threaded keep-alive HTTP-ish server; ``/hold`` waits for ``release`` to answer."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        if host == "::":
            self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self.held = threading.Event()
        self.release = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    if head.split()[1] == b"/hold":
                        self.held.set()
                        self.release.wait(5)
                    conn.sendall(RESPONSE)

    def close(self) -> None:
        self.release.set()
        for sock in (self.listener, *self.conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            sock.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# (listen address, client address): IPv4, IPv6, and IPv4 clients of a dual-stack listener.
FAMILIES = {
    "ipv4": ("127.0.0.1", "127.0.0.1"),
    "ipv6": ("::1", "::1"),
    "v4-mapped": ("::", "127.0.0.1"),
}


@pytest.fixture(name="server", params=["ipv4"])
def fixture_server(request: pytest.FixtureRequest) -> Iterator[tuple[Server, str]]:
    listen, client = FAMILIES[request.param]
    if ":" in listen and not _ipv6_loopback():
        pytest.skip("no IPv6 on loopback here")
    server = Server(listen)
    yield server, client
    server.close()


def connect(server: tuple[Server, str]) -> socket.socket:
    return socket.create_connection((server[1], server[0].port), timeout=5)


def ask(sock: socket.socket, path: str = "/") -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def answer(sock: socket.socket) -> None:
    data = b""
    while not data.endswith(b"ok"):
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        data += chunk


def read_until(
    signal: KernelSocketSignal, done: Callable[[Reading], bool], timeout: float = 2.0
) -> Reading:
    """Reads until ``done`` (the peer's ACK of an answer may lag the answer by a few ms)."""
    end = time.monotonic() + timeout
    reading = signal.read(dl())
    while not done(reading) and time.monotonic() < end:
        time.sleep(0.005)
        reading = signal.read(dl())
    return reading


def quiet(signal: KernelSocketSignal) -> Reading:
    return read_until(signal, lambda r: r.in_flight == 0)


@needs_netlink
@pytest.mark.parametrize("server", list(FAMILIES), indirect=True)
def test_new_connection_and_each_keepalive_request_count(server: tuple[Server, str]) -> None:
    """A request on a new connection counts once; each further request on it counts again."""
    signal = KernelSocketSignal(server[0].port, exclude_own=False)
    base = signal.read(dl()).requests
    assert base is not None
    with connect(server) as sock:
        ask(sock)
        answer(sock)
        assert quiet(signal) == Reading(base + 1, 0.0)
        ask(sock)
        answer(sock)
        assert quiet(signal) == Reading(base + 2, 0.0)


@needs_netlink
def test_idle_connections_are_neither_traffic_nor_in_flight(server: tuple[Server, str]) -> None:
    """An idle keep-alive connection, or one never used, adds nothing and is not in flight."""
    signal = KernelSocketSignal(server[0].port, exclude_own=False)
    with connect(server) as used, connect(server):
        ask(used)
        answer(used)
        settled = quiet(signal)
        for _ in range(3):
            time.sleep(0.02)
            assert signal.read(dl()) == settled


@needs_netlink
@pytest.mark.parametrize("keepalive", [False, True])
def test_unanswered_request_is_in_flight_until_answered(
    server: tuple[Server, str], keepalive: bool
) -> None:
    """A request read but not answered is in flight (fresh or kept-alive), and not after."""
    signal = KernelSocketSignal(server[0].port, exclude_own=False)
    with connect(server) as sock:
        if keepalive:
            ask(sock)
            answer(sock)
        before = quiet(signal).requests
        assert before is not None
        ask(sock, "/hold")
        assert server[0].held.wait(2)
        assert signal.read(dl()) == Reading(before + 1, 1.0)
        server[0].release.set()
        answer(sock)
        assert quiet(signal) == Reading(before + 1, 0.0)


def _states(port: int) -> set[int]:
    diag = NetlinkSockDiag()
    try:
        return {s.state for s in diag.tcp_sockets(0xFFF) if s.local_port == port}
    finally:
        diag.close()


@needs_netlink
def test_half_closed_client_stays_in_flight_and_its_fin_is_not_traffic(
    server: tuple[Server, str],
) -> None:
    """After a client's FIN (CLOSE_WAIT) its request is still in flight; the FIN adds nothing."""
    signal = KernelSocketSignal(server[0].port, exclude_own=False)
    with connect(server) as sock:
        ask(sock, "/hold")
        assert server[0].held.wait(2)
        held = signal.read(dl())
        assert held.in_flight == 1.0
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while TCP_CLOSE_WAIT not in _states(server[0].port) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert signal.read(dl()) == held
        server[0].release.set()
        answer(sock)
        assert quiet(signal) == Reading(held.requests, 0.0)


_SERVER_SCRIPT = r"""
import socket, sys, threading
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)
def serve(conn):
    buf = b""
    while True:
        data = conn.recv(4096)
        if not data:
            return conn.close()
        buf += data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""

_CLIENT_SCRIPT = r"""
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
data = b""
while not data.endswith(b"ok"):
    data += sock.recv(4096)
print("answered", flush=True)
sys.stdin.read()  # keeps the connection open until the test closes our stdin
"""


@contextlib.contextmanager
def python(script: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A Python child running ``script``, with its first output line."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child, child.stdout.readline().strip()
    finally:
        child.kill()
        child.communicate()


@needs_netlink
def test_own_connections_are_excluded_only_when_asked() -> None:
    """Our own client's requests (the agent's scrapes) are left out; other processes' count."""
    with python(_SERVER_SCRIPT) as (_, port_line):  # the app: another process, as in a pod
        port = int(port_line)
        own = KernelSocketSignal(port)
        everything = KernelSocketSignal(port, exclude_own=False)
        base_own, base_all = own.read(dl()).requests, everything.read(dl()).requests
        assert base_own is not None and base_all is not None
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for n in (1, 2):
                ask(sock)
                answer(sock)
                assert quiet(own) == Reading(base_own, 0.0)
                assert quiet(everything) == Reading(base_all + n, 0.0)
            with python(_CLIENT_SCRIPT, str(port)) as (_, line):
                assert line == "answered"
                assert quiet(own) == Reading(base_own + 1, 0.0)
                assert quiet(everything) == Reading(base_all + 3, 0.0)


# --- canned records ------------------------------------------------------------------------------

PORT = 8080


class FakeDiag:
    """A diag factory and session in one, serving whatever ``sockets`` holds."""

    def __init__(self, *, filter_states: bool = True) -> None:
        self.filter_states = filter_states
        self.sockets: list[TcpSocket] = []
        self.opened = 0
        self.closed = 0

    def __call__(self) -> FakeDiag:
        self.opened += 1
        return self

    def tcp_sockets(self, states: int) -> Iterable[TcpSocket]:
        return [s for s in self.sockets if states & (1 << s.state) or not self.filter_states]

    def close(self) -> None:
        self.closed += 1


def served(
    remote_port: int,
    received: int,
    acked: int = 0,
    *,
    recv_ms: int = 0,
    sent_ms: int = 0,
    state: int = TCP_ESTABLISHED,
    rqueue: int = 0,
    wqueue: int = 0,
    remote: str = "10.0.0.9",
    local: str = "10.0.0.1",
) -> TcpSocket:
    """The app's end of a connection from ``remote:remote_port`` (cookie: the remote port)."""
    return TcpSocket(
        local=local,
        local_port=PORT,
        remote=remote,
        remote_port=remote_port,
        state=state,
        inode=remote_port + 100_000,
        cookie=remote_port,
        rqueue=rqueue,
        wqueue=wqueue,
        info=TcpInfo(received, acked, recv_ms, sent_ms),
    )


def fake_signal(
    exclude_own: bool = False, ours: frozenset[int] = frozenset(), diag: FakeDiag | None = None
) -> tuple[KernelSocketSignal, FakeDiag]:
    diag = diag or FakeDiag()
    return KernelSocketSignal(
        PORT, exclude_own=exclude_own, diag_factory=diag, own_inodes=lambda: ours
    ), diag


def test_counter_counts_new_and_grown_connections_and_never_decreases() -> None:
    """+1 per connection first seen with data and per known one that received more; never down."""
    signal, diag = fake_signal()
    assert signal.read(dl()) == Reading(0.0, 0.0)
    diag.sockets = [served(1, 0), served(2, 100, 50, recv_ms=9, sent_ms=5)]
    assert signal.read(dl()).requests == 1.0  # the silent connection adds nothing yet
    diag.sockets = [served(1, 80, 40, recv_ms=9, sent_ms=5), served(2, 100, 50)]
    assert signal.read(dl()).requests == 2.0  # first request on the silent one
    diag.sockets = [served(1, 160, 80, recv_ms=9, sent_ms=5), served(2, 100, 50)]
    assert signal.read(dl()).requests == 3.0  # keep-alive request
    diag.sockets = []
    assert signal.read(dl()).requests == 3.0  # connections gone: the count stays
    diag.sockets = [served(1, 10, 5, recv_ms=9, sent_ms=5)]  # same 4-tuple, new socket later
    assert signal.read(dl()).requests == 4.0
    assert diag.opened == diag.closed == 6


def test_same_tuple_with_new_cookie_is_a_new_connection() -> None:
    """A reused 4-tuple with a new cookie is a new connection, even with fewer bytes."""
    signal, diag = fake_signal()
    diag.sockets = [served(1, 500, 500, recv_ms=9, sent_ms=5)]
    assert signal.read(dl()).requests == 1.0
    reused = served(1, 20, 20, recv_ms=9, sent_ms=5)
    diag.sockets = [replace(reused, cookie=77)]
    assert signal.read(dl()).requests == 2.0


@pytest.mark.parametrize(
    ("sock", "busy"),
    [
        (served(1, 0), False),  # connected, nothing received
        (served(1, 120, 0, recv_ms=4, sent_ms=4), True),  # never answered: set-up tick tie
        (served(1, 120, 300, recv_ms=9, sent_ms=2), False),  # answered after the request
        (served(1, 120, 300, recv_ms=2, sent_ms=9), True),  # request newer than the answer
        (served(1, 120, 300, recv_ms=9, sent_ms=2, rqueue=40), True),  # not read by the app yet
        (served(1, 120, 300, recv_ms=9, sent_ms=2, wqueue=900), True),  # answer still going out
        (served(1, 121, 300, recv_ms=9, sent_ms=2, rqueue=1, state=TCP_CLOSE_WAIT), False),
    ],
)
def test_in_flight_on_first_sight(sock: TcpSocket, busy: bool) -> None:
    """In flight: data newer than the answer, unread request bytes or unacked answer bytes."""
    signal, diag = fake_signal()
    diag.sockets = [sock]
    assert signal.read(dl()).in_flight == float(busy)


def test_in_flight_from_counter_changes_between_reads() -> None:
    """Bytes in with none out since the last read is in flight even when the ticks tie."""
    signal, diag = fake_signal()
    diag.sockets = [served(1, 100, 300, recv_ms=50, sent_ms=40)]
    assert signal.read(dl()) == Reading(1.0, 0.0)
    diag.sockets = [served(1, 200, 300, recv_ms=7, sent_ms=7)]  # new request, same tick
    assert signal.read(dl()) == Reading(2.0, 1.0)
    diag.sockets = [served(1, 200, 300, recv_ms=90, sent_ms=90)]  # still working on it
    assert signal.read(dl()) == Reading(2.0, 1.0)
    diag.sockets = [served(1, 200, 600, recv_ms=95, sent_ms=95)]  # answered, nothing new in
    assert signal.read(dl()) == Reading(2.0, 0.0)
    # Known limit: request and answer both since the last read, in one tick: reads as quiet.
    diag.sockets = [served(1, 300, 900, recv_ms=3, sent_ms=3)]
    assert signal.read(dl()) == Reading(3.0, 0.0)


def test_answer_awaiting_its_ack_is_in_flight_only_until_acknowledged() -> None:
    """Unacknowledged answer bytes are in flight, but not remembered once the ACK arrives."""
    signal, diag = fake_signal()
    diag.sockets = [served(1, 100, 0, recv_ms=4, sent_ms=4, wqueue=300)]
    assert signal.read(dl()) == Reading(1.0, 1.0)
    diag.sockets = [served(1, 100, 300, recv_ms=90, sent_ms=90)]
    assert signal.read(dl()) == Reading(1.0, 0.0)


def test_fin_is_not_new_traffic() -> None:
    """The client's FIN (CLOSE_WAIT) counts one in the kernel's bytes but is no request."""
    signal, diag = fake_signal()
    diag.sockets = [served(1, 100, 300, recv_ms=9, sent_ms=2)]
    assert signal.read(dl()) == Reading(1.0, 0.0)
    diag.sockets = [served(1, 101, 300, recv_ms=9, sent_ms=2, rqueue=1, state=TCP_CLOSE_WAIT)]
    assert signal.read(dl()) == Reading(1.0, 0.0)


def test_other_ports_client_ends_and_other_states_are_ignored() -> None:
    """Only the app's end of connections to its port, ESTABLISHED or CLOSE_WAIT, is read."""
    diag = FakeDiag(filter_states=False)  # as if the kernel sent states we did not ask for
    signal, _ = fake_signal(diag=diag)
    other_port = TcpSocket("10.0.0.1", 9090, "10.0.0.9", 1, info=TcpInfo(50, 0, 1, 1))
    client_end = TcpSocket("10.0.0.1", 40000, "10.0.0.2", PORT, info=TcpInfo(50, 0, 1, 1))
    closing = served(2, 50, state=9)  # LAST_ACK: the app closed its side already
    listening = TcpSocket("0.0.0.0", PORT, "0.0.0.0", 0, state=10)
    diag.sockets = [other_port, client_end, closing, listening]
    assert signal.read(dl()) == Reading(0.0, 0.0)


def test_peers_of_our_client_sockets_are_excluded_across_families_and_after_close() -> None:
    """Our client's peer is left out (v4-mapped too), also in CLOSE_WAIT once we closed."""
    ours = frozenset({7})
    signal, diag = fake_signal(exclude_own=True, ours=ours)
    everything, _ = fake_signal(diag=diag)
    client = TcpSocket("127.0.0.1", 5000, "127.0.0.1", PORT, inode=7, cookie=70)
    peer = served(
        5000, 90, 0, recv_ms=1, sent_ms=1, local="::ffff:127.0.0.1", remote="::ffff:127.0.0.1"
    )
    foreign = served(6000, 90, 300, recv_ms=9, sent_ms=2)
    diag.sockets = [client, peer, foreign]
    assert signal.read(dl()) == Reading(1.0, 0.0)  # the scrape in progress is not in flight
    assert everything.read(dl()) == Reading(2.0, 1.0)
    closed = served(5000, 91, 0, state=TCP_CLOSE_WAIT, rqueue=1, remote="::ffff:127.0.0.1")
    diag.sockets = [closed, foreign]  # our client socket is gone
    assert signal.read(dl()) == Reading(1.0, 0.0)


def test_our_server_sockets_are_not_excluded() -> None:
    """Sockets of ours that are the server end still count: only our clients' peers are ours."""
    signal, diag = fake_signal(exclude_own=True, ours=frozenset({100_001}))
    diag.sockets = [served(1, 90, 300, recv_ms=9, sent_ms=2)]  # inode 100_001
    assert signal.read(dl()).requests == 1.0


def test_no_time_left_is_unavailable_without_touching_netlink() -> None:
    """With the deadline spent the read fails at once."""
    signal, diag = fake_signal()
    clock = FakeClock()
    with pytest.raises(SignalUnavailable, match="no time left"):
        signal.read(Deadline(clock, clock.now()))
    assert diag.opened == 0


def test_netlink_failures_are_unavailable_with_a_one_line_reason() -> None:
    """An unreadable socket table is SignalUnavailable, and available() says why."""

    def refused() -> FakeDiag:
        raise PermissionError(errno.EACCES, "Permission denied")

    signal = KernelSocketSignal(PORT, diag_factory=refused)
    with pytest.raises(SignalUnavailable, match=r"^netlink sock_diag: PermissionError: Permission"):
        signal.read(dl())
    ok, why = KernelSocketSignal.available(refused)
    assert not ok
    assert "\n" not in why
    assert "Permission denied" in why


def test_missing_tcp_info_is_unavailable_rather_than_quiet() -> None:
    """Without byte counters the kernel cannot tell traffic from silence: no reading."""
    signal, diag = fake_signal()
    diag.sockets = [TcpSocket("10.0.0.1", PORT, "10.0.0.9", 1)]
    with pytest.raises(SignalUnavailable, match="tcp_info"):
        signal.read(dl())
