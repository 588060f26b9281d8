"""The sidecar under unauthenticated abuse: it stays small, keeps its file descriptors, answers.

The real ``prestop serve`` runs in a subprocess with ``RLIMIT_NOFILE`` 128 and an unreachable
registry and app, while abusers send 48 MB unauthenticated POSTs, hold 200 idle connections
and trickle slowloris heads.

Memory, enforced: a pod's 64 MiB limit is a cgroup limit, and the cgroup's OOM killer kills the
container the moment it is charged more. No cgroup can be created in CI, and the rlimits
are no stand-in: ``RLIMIT_AS``/``RLIMIT_DATA`` count address space (the 8 MiB stack reserved
for every thread, glibc's 64 MiB malloc arenas, the interpreter's mappings) that no cgroup
charges, so 64 MiB of them stops Python from starting at all. What is enforced instead, by
:class:`RssCeiling`, from the moment the process starts until it exits: every 10 ms the test
reads the sidecar's ``VmHWM`` (the kernel's own record of the largest resident set the process
ever had, so a spike between two samples is not missed) and ``SIGKILL``s it as soon as that is
over 64 MiB, as the OOM killer would; every test on the ``served`` fixture then fails, naming
the peak. Not counted, unlike in a cgroup: the kernel's socket buffers and page cache charged
to the container (the sidecar writes no files; its sockets are bounded by the connection limit).

Every wait is for a condition with a generous bound, so the tests hold on a busy machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from agent.httpserver import BoundedHTTPServer, Limits, Request, Response, Route

TOKEN = "abuse-test-token"
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unused_port() -> int:
    return _free_port()  # nothing listens there: registry and app are unreachable


def _limits() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def _wait_for(condition: Callable[[], bool], bound: float, step: float = 0.05) -> bool:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


@dataclass
class RssCeiling:
    """Kills ``pid`` the moment its peak resident set (``VmHWM``) is over ``limit`` bytes."""

    pid: int
    limit: int = 64 * MIB
    interval: float = 0.01
    peak: int = 0  # the largest VmHWM seen, bytes
    killed_at: int | None = None  # the VmHWM that got the process killed
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssCeiling:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        # A pidfd names this process and no other: once it has exited (and its PID may be
        # reused) the pidfd reads as ready and a signal through it cannot reach anyone else.
        pidfd = os.pidfd_open(self.pid)
        path = Path(f"/proc/{self.pid}/status")
        try:
            while not self._stop.is_set() and not select.select([pidfd], [], [], 0)[0]:
                try:
                    text = path.read_text()
                except OSError:
                    return  # gone
                m = re.search(r"^VmHWM:\s+(\d+)", text, re.M)
                if m is None:
                    return  # a zombie: no memory left to watch
                hwm = int(m.group(1)) * 1024
                self.peak = max(self.peak, hwm)
                self.samples += 1
                if hwm > self.limit:
                    self.killed_at = hwm
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    return
                self._stop.wait(self.interval)
        finally:
            os.close(pidfd)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def verdict(self) -> str:
        if self.killed_at is not None:
            return (
                f"killed: resident set reached {self.killed_at / MIB:.1f} MiB, over the "
                f"{self.limit / MIB:.0f} MiB limit"
            )
        return f"peak resident set {self.peak / MIB:.1f} MiB of {self.limit / MIB:.0f} MiB"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ceiling: RssCeiling

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (kB), Threads and open file descriptors of the sidecar."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM|Threads):\s+(\d+)", text, re.M)}
        found["fds"] = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        return found

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _request(
    port: int, raw: bytes, timeout: float = 10.0, read_body: bool = False
) -> tuple[int, bytes]:
    """Sends ``raw`` on a new connection; the status code (0: no answer) and the body."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(raw)
            data = b""
            end = time.monotonic() + timeout
            while b"\r\n\r\n" not in data and time.monotonic() < end:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
            if m is None:
                return 0, b""
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            want = int(length.group(1)) if length else 0
            while read_body and len(body) < want and time.monotonic() < end:
                chunk = s.recv(4096)
                if not chunk:
                    break
                body += chunk
            return int(m.group(1)), body
    except OSError:
        return 0, b""


def _get(port: int, path: str, headers: str = "", timeout: float = 10.0) -> tuple[int, bytes]:
    raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode()
    return _request(port, raw, timeout, read_body=True)


def _answers(port: int, path: str, headers: str = "", bound: float = 15.0) -> tuple[int, float]:
    """The first answer to ``path`` within ``bound`` seconds (retrying), and how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        status, _ = _get(port, path, headers, timeout=min(5.0, bound))
        if status:
            return status, time.monotonic() - start
        time.sleep(0.1)
    return 0, time.monotonic() - start


@pytest.fixture(name="served")
def fixture_served(tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    log = tmp_path / "sidecar.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRESTOP_")}
    env = {
        **base,
        "PRESTOP_NACOS_ADDR": f"127.0.0.1:{_unused_port()}",
        "PRESTOP_SERVICE": "demo",
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(_unused_port()),
        # A short run that still holds a registry call, the minimum drain and the shutdown.
        "PRESTOP_BUDGET": "6",
        "PRESTOP_HTTP_TIMEOUT": "1",
        "PRESTOP_MIN_WAIT": "0.5",
        "PRESTOP_SHUTDOWN_TIMEOUT": "3",
        "PRESTOP_TOKEN": TOKEN,
        "PRESTOP_LOG_TO_PID1": "false",
        "PRESTOP_LOG_FORMAT": "json",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limits,  # only setrlimit, before exec
        )
    served = Served(proc, port, log, RssCeiling(proc.pid).start())
    try:
        assert _wait_for(lambda: _get(port, "/healthz")[0] == 200, 30), (
            served.ceiling.verdict(),
            served.log_text(),
        )
        yield served
        assert served.ceiling.killed_at is None, served.ceiling.verdict()
    finally:
        served.ceiling.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- the abusers: threads with bounded loops, stopped by an event ---


@dataclass
class Abuse:
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    sent_bytes: int = 0  # of the 48 MB bodies, before the sidecar closed the connection
    posts: int = 0  # huge POSTs finished (refused and closed, or sent whole)
    reconnects: int = 0
    connected: int = 0  # connections the sidecar's port accepted, all abusers together
    connect_failed: int = 0  # connection attempts refused or timed out

    def start(self, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads)

    def _connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.connect_failed += 1
            return None
        self.connected += 1
        return s

    def huge_post(self, size: int = 48 * MIB, rounds: int = 1000) -> None:
        """Unauthenticated POSTs with a 48 MB body, sent blindly (no waiting for an answer)."""
        chunk = b"x" * MIB
        for _ in range(rounds):
            if self.stop.is_set():
                return
            s = self._connect()
            if s is None:
                continue
            with s:
                try:
                    s.sendall(f"POST /prestop HTTP/1.1\r\nContent-Length: {size}\r\n\r\n".encode())
                    for _ in range(size // MIB):
                        if self.stop.is_set():
                            break
                        s.sendall(chunk)
                        self.sent_bytes += len(chunk)
                except OSError:
                    pass  # refused and closed by the sidecar: the point
            self.posts += 1
            self.stop.wait(0.05)

    def idle(self, count: int = 200) -> None:
        """Holds ``count`` connections that never send a byte; reopens those the server closes."""
        socks: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                alive = []
                readable = select.select(socks, [], [], 0)[0] if socks else []
                for s in socks:
                    if s in readable:  # closed by the server (EOF or reset)
                        s.close()
                    else:
                        alive.append(s)
                socks = alive
                for _ in range(count - len(socks)):
                    new = self._connect()
                    if new is not None:
                        socks.append(new)
                        self.reconnects += 1
                self.stop.wait(0.2)
        finally:
            for s in socks:
                s.close()

    def slowloris(self, count: int = 20) -> None:
        """``count`` connections sending a request head one byte every 0.3 s, forever."""
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
        socks: dict[socket.socket, int] = {}
        try:
            while not self.stop.is_set():
                for _ in range(count - len(socks)):
                    new = self._connect()
                    if new is not None:
                        socks[new] = 0
                for s, at in list(socks.items()):
                    try:
                        s.send(head[at : at + 1])
                        socks[s] = (at + 1) % len(head)
                    except OSError:
                        s.close()
                        del socks[s]
                self.stop.wait(0.3)
        finally:
            for s in socks:
                s.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_abuse_does_not_knock_the_sidecar_over(served: Served) -> None:
    """A 48 MB unauthenticated POST, 200 idle connections and slowloris clients at once, under
    128 file descriptors: memory stays far under 64 MiB, /healthz and an authorised /prestop
    answer, bad Content-Lengths are 400s, and the log has no traceback and no line per call."""
    port = served.port
    before = served.status()
    abuse = Abuse(port)
    abuse.start(abuse.huge_post)
    abuse.start(abuse.idle)
    abuse.start(abuse.slowloris)
    peak: dict[str, int] = {}
    answered: list[float] = []
    started = time.monotonic()
    try:
        # The abusers are at it: wait until 200 idle connections were opened and three 48 MB
        # POSTs were refused.
        assert _wait_for(lambda: abuse.reconnects >= 200 and abuse.posts >= 3, 40), (
            abuse.reconnects,
            abuse.posts,
        )
        # For at least 8 s (longer than the 5 s header timeout, so the slowloris clients are cut
        # and reconnect), /healthz answers every time.
        abused_from = time.monotonic()
        for i in range(400):
            status, took = _answers(port, "/healthz", bound=15)
            assert status == 200, served.log_text()[-2000:]
            answered.append(took)
            for k, v in served.status().items():
                peak[k] = max(peak.get(k, 0), v)
            if i >= 10 and time.monotonic() - abused_from > 8:
                break
            time.sleep(0.05)
        # The sidecar closed idle ones, the abuser reopened them.
        assert _wait_for(lambda: abuse.reconnects > 220, 30), abuse.reconnects
        # Malformed Content-Length: a 400 each, no traceback, no thread held.
        for bad in ("abc", "1e12", "2^63", "-1", " 1 2", "0x10", "+5"):
            raw = f"POST /prestop HTTP/1.1\r\nContent-Length: {bad}\r\n{TOKEN_HEADER()}\r\n"
            assert _answer_with_retry(port, raw.encode()) == 400, bad
        # Route and token come from the head, before any body: without the token a 403 even
        # for a huge body; with it, a 413 without reading the body (the authorised path works).
        for length, token, want in ((48 * MIB, "", 403), (48 * MIB, TOKEN_HEADER(), 413)):
            raw = f"POST /prestop HTTP/1.1\r\nContent-Length: {length}\r\n{token}\r\n"
            assert _answer_with_retry(port, raw.encode()) == want
        huge = "99999999999999999999999999"
        raw = f"POST /prestop HTTP/1.1\r\nContent-Length: {huge}\r\n{TOKEN_HEADER()}\r\n"
        assert _answer_with_retry(port, raw.encode()) == 413
        # /metrics counts the refusals by reason.
        metrics = _get(port, "/metrics", timeout=5)[1].decode()
        for reason in ("bad_request", "forbidden", "body_too_large"):
            assert f'prestop_http_refused_total{{reason="{reason}"}}' in metrics, metrics
        # The peak of the abuse alone; the drain below adds the kernel signal's pyroute2.
        abuse_hwm = served.status()["VmHWM"]
        # The authorised hook call, for real (an unreachable registry: a degraded outcome).
        status, body = _request(
            port,
            f"GET /prestop HTTP/1.1\r\nConnection: close\r\n{TOKEN_HEADER()}\r\n".encode(),
            timeout=30,
            read_body=True,
        )
        assert status == 200, (status, body)
        assert b'"joined": false' in body
        assert _answers(port, "/healthz", bound=15)[0] == 200
        for k, v in served.status().items():
            peak[k] = max(peak.get(k, 0), v)
    finally:
        abuse.join()
    elapsed = time.monotonic() - started
    after = served.status()
    assert served.proc.poll() is None, served.ceiling.verdict()
    metrics = _get(port, "/metrics", timeout=5)[1].decode()
    refused = dict(re.findall(r'prestop_http_refused_total\{reason="(\w+)"\} (\d+)', metrics))
    print(
        f"\nbefore {before}; peak during abuse {peak}; after {after}; "
        f"48 MB POSTs {abuse.posts} ({abuse.sent_bytes / MIB:.0f} MiB written); connections "
        f"accepted {abuse.connected}, failed to connect {abuse.connect_failed}; refused by the "
        f"sidecar {refused}; /healthz answered in max {max(answered):.3f}s; {elapsed:.1f}s; "
        f"peak resident set before the authorised /prestop {abuse_hwm / 1024:.1f} MiB; "
        f"memory: {served.ceiling.verdict()} ({served.ceiling.samples} samples)"
    )
    assert served.ceiling.killed_at is None, served.ceiling.verdict()
    assert after["VmHWM"] * 1024 <= 64 * MIB, after  # the kernel's peak, the whole run long
    assert peak["Threads"] <= 20, peak  # 4 for /readyz, 8 for /prestop, the loop and start-up
    text = served.log_text()
    assert "Traceback" not in text
    refused_lines = text.count('"event":"http_refused"')
    assert 1 <= refused_lines <= elapsed / 10 + 2, refused_lines  # one per 10 s at most
    # After the abuse, idle connections are gone within the timeouts and it answers at once.
    assert _wait_for(lambda: served.status()["fds"] <= before["fds"] + 2, 30), served.status()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0


@pytest.mark.slow
@pytest.mark.parametrize(("mib", "killed"), [(96, True), (8, False)])
def test_the_memory_ceiling_is_enforced(mib: int, killed: bool) -> None:
    """A process whose resident set goes over 64 MiB is killed (SIGKILL, like the OOM killer);
    one that stays under is left alone. This is what makes the abuse test's 64 MiB binding."""
    code = (
        "import sys, time\n"
        f"block = b'x' * ({mib} * 2**20)  # written, so resident\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    ceiling = RssCeiling(proc.pid).start()
    try:
        if killed:
            assert proc.wait(60) == -signal.SIGKILL, ceiling.verdict()
            assert ceiling.killed_at is not None and ceiling.killed_at > 64 * MIB
            assert "killed" in ceiling.verdict()
        else:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            seen = ceiling.samples
            # Several samples after the allocation, still alive and not killed.
            assert _wait_for(lambda: ceiling.samples >= seen + 5, 30), ceiling.samples
            assert proc.poll() is None and ceiling.killed_at is None
            assert mib * MIB <= ceiling.peak <= 64 * MIB, ceiling.verdict()
    finally:
        ceiling.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def TOKEN_HEADER() -> str:
    return f"X-Prestop-Token: {TOKEN}\r\n"


def _answer_with_retry(port: int, raw: bytes, bound: float = 15.0) -> int:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        status, _ = _request(port, raw, timeout=5)
        if status:
            return status
        time.sleep(0.1)
    return 0


def _closed_by_server(sock: socket.socket, data: bytes) -> bool:
    """Sends ``data`` (if any) on the non-blocking ``sock``: has the server closed it?"""
    try:
        if data:
            sock.send(data)
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # open, and nothing to read
    except OSError:
        return True  # reset: closed


@pytest.mark.slow
def test_idle_and_slow_connections_are_closed(served: Served) -> None:
    """A connection that sends nothing, and one that trickles its head, are closed after the
    header timeout (5 s) although the second never stops sending."""
    # Before the connects: the server's timer starts later, so a close measured earlier than
    # the header timeout can only be the server's doing, however slow the machine.
    start = time.monotonic()
    idle = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    slow = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    closed: dict[str, float] = {}
    with idle, slow:
        idle.setblocking(False)
        slow.setblocking(False)
        head = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        for i in range(300):  # 30 s at most
            # The slow client trickles one byte of its head per round; the idle one sends none.
            for name, sock, data in (("slow", slow, head[i : i + 1]), ("idle", idle, b"")):
                if name not in closed and _closed_by_server(sock, data):
                    closed[name] = time.monotonic() - start
            if len(closed) == 2:
                break
            time.sleep(0.1)
    assert set(closed) == {"idle", "slow"}, closed
    assert all(4.5 <= t <= 30 for t in closed.values()), closed
    assert "Traceback" not in served.log_text()


# --- the server alone, in-process ---


@contextlib.contextmanager
def _server(limits: Limits, routes: dict[str, Route]) -> Iterator[BoundedHTTPServer]:
    server = BoundedHTTPServer(("127.0.0.1", 0), routes, limits)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(10)


def _ok(_: Request) -> Response:
    return Response(200, b"{}")


def test_refusals_are_logged_in_aggregate() -> None:
    """50 refused calls: counted by reason, one log line for the first, one with the rest."""
    routes = {"/ok": Route(_ok), "/secret": Route(_ok, authorize=lambda r: False)}
    with (
        structlog.testing.capture_logs() as logs,
        _server(Limits(log_interval=3600), routes) as server,
    ):
        port = server.server_address[1]
        for i in range(50):
            path = "/secret" if i % 2 else "/nowhere"
            assert _get(port, path)[0] == (403 if i % 2 else 404)
        assert _get(port, "/ok")[0] == 200
        assert server.refused_totals() == {"forbidden": 25, "not_found": 25}
    refused = [e for e in logs if e["event"] == "http_refused"]
    assert [e["total"] for e in refused] == [1, 49], refused
    assert not [e for e in logs if e["event"] != "http_refused"], logs


def test_a_body_is_read_only_when_small_and_the_request_allowed() -> None:
    """A small body reaches the handler; keep-alive and pipelining work; the rest is refused."""
    seen: list[bytes] = []

    def echo(r: Request) -> Response:
        seen.append(r.body)
        return Response(200, r.body)

    routes = {"/echo": Route(echo, methods=frozenset({"POST"}), lane="pool")}
    with _server(Limits(max_body=16), routes) as server:
        port = server.server_address[1]
        two = b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /echo HTTP/1.1\r\n"
        two += b"Content-Length: 2\r\nConnection: close\r\n\r\nde"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(two)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"de")
        assert seen == [b"abc", b"de"]
        big = b"POST /echo HTTP/1.1\r\nContent-Length: 17\r\n\r\n"
        assert _request(port, big)[0] == 413
        assert _request(port, b"GET /echo HTTP/1.1\r\n\r\n")[0] == 405
        assert (
            _request(port, b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")[0] == 501
        )
        assert _request(port, b"garbage\r\n\r\n")[0] == 400
        assert _request(port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 1500)[0] == 431
        assert seen == [b"abc", b"de"]


def test_over_the_connection_limit_the_oldest_idle_connection_makes_room() -> None:
    """At the limit, a new connection evicts the longest-idle one, so a real request gets in."""
    with _server(Limits(max_connections=8), {"/ok": Route(_ok)}) as server:
        port = server.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        try:
            assert _wait_for(lambda: server.connections == 8, 30), server.connections
            assert _get(port, "/ok", timeout=10)[0] == 200
            assert server.connections <= 8
            assert server.refused_totals().get("evicted_idle", 0) >= 12
        finally:
            for s in idle:
                s.close()
