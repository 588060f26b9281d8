"""A small HTTP/1.1 server that an unauthenticated client cannot knock over.

One event-loop thread owns every socket: it accepts, reads request heads (capped size, a
deadline from the first byte), decides from the head alone (route, method, token, framing,
body size) and writes responses without blocking. Only a request that passed those checks
reaches a thread, from a small bounded pool per lane; a cheap route is answered in the loop.
So an idle or slow connection costs one file descriptor and at most a few KB, never a thread,
and no body larger than ``max_body`` is ever read.

Limits: ``max_connections`` sockets at most; at the limit a new connection evicts the one that
has waited longest without a complete request (idle or slowloris), and is itself closed at once
when there is none. Refused calls are counted by reason (``refused_totals``) and logged at most
once per ``log_interval`` as one ``http_refused`` line with the counts.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from queue import SimpleQueue
from typing import Literal

from agent.logs import get_logger

log = get_logger()

Lane = Literal["inline", "pool", "own"]
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    max_header_bytes: int = 8192
    max_body: int = 4096
    header_timeout: float = 5.0  # a request's head and body, from its first byte (or accept)
    idle_timeout: float = 5.0  # a kept-alive connection between requests
    write_timeout: float = 10.0
    pool_workers: int = 4  # lane "pool": slow, unauthenticated routes (e.g. /readyz)
    pool_queue: int = 16
    own_workers: int = 8  # lane "own": authorised long calls (e.g. /prestop)
    log_interval: float = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes
    client: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    methods: frozenset[str] = frozenset({"GET"})
    lane: Lane = "inline"
    # Checked from the head, before any body is read; False: 403.
    authorize: Callable[[Request], bool] | None = None


class RefusalLog:
    """Counts refused calls by reason; one log line per interval at most, never one per call."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.totals: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._last = float("-inf")
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            self.totals[reason] += 1
            self._pending[reason] += 1

    def flush(self, now: float, force: bool = False) -> None:
        with self._lock:
            if not self._pending or (not force and now - self._last < self.interval):
                return
            counts, self._pending = dict(self._pending), Counter()
            self._last = now
        log.warning("http_refused", counts=counts, total=sum(counts.values()))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.totals)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: str
    state: Literal["reading", "busy", "writing"] = "reading"
    buf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    deadline: float = 0.0
    last_active: float = 0.0
    keep_alive: bool = False
    registered: int = 0  # the selector events it is registered for (0: none)


class _Pool:
    """A thread pool with a bounded queue: ``submit`` says False instead of queueing forever."""

    def __init__(self, workers: int, queue: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + queue)

    def submit(self, fn: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                fn()
            finally:
                self._slots.release()

        self._executor.submit(run)
        return True

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _json(status: int, error: str) -> Response:
    return Response(status, ('{"error": "' + error + '"}').encode())


class BoundedHTTPServer:
    """``serve_forever``/``shutdown``/``server_close``/``server_address``, like socketserver's."""

    def __init__(
        self, address: tuple[str, int], routes: dict[str, Route], limits: Limits | None = None
    ) -> None:
        self.routes = routes
        self.limits = limits or Limits()
        self.refusals = RefusalLog(self.limits.log_interval)
        self._listener = socket.create_server(address, backlog=128)
        self._listener.setblocking(False)
        self.server_address: tuple[str, int] = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._conns: dict[socket.socket, _Conn] = {}
        self._done: SimpleQueue[tuple[_Conn, Response, bool]] = SimpleQueue()
        self._pools = {
            "pool": _Pool(self.limits.pool_workers, self.limits.pool_queue, "http-pool"),
            "own": _Pool(self.limits.own_workers, 0, "http-own"),
        }
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._accept_paused_until = 0.0
        self._reparse: list[_Conn] = []  # kept-alive connections with a pipelined request

    # --- public ---

    @property
    def connections(self) -> int:
        return len(self._conns)

    def refused_totals(self) -> dict[str, int]:
        return self.refusals.snapshot()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                timeout = poll_interval
                deadlines = [c.deadline for c in self._conns.values() if c.state != "busy"]
                if deadlines or self._reparse:
                    soonest = 0.0 if self._reparse else min(deadlines) - now
                    timeout = max(0.0, min(timeout, soonest))
                for key, events in self._selector.select(timeout):
                    self._event(key, events)
                self._finish_done()
                self._parse_pipelined()
                self._expire(time.monotonic())
                self.refusals.flush(time.monotonic())
        finally:
            self._stop.clear()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for pool in self._pools.values():
            pool.shutdown()
        self._selector.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self.refusals.flush(time.monotonic(), force=True)

    # --- the loop ---

    def _wake(self) -> None:
        # Full (a wake-up is pending anyway) or closed: either way nothing to do.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _event(self, key: selectors.SelectorKey, events: int) -> None:
        sock = key.fileobj
        if sock is self._listener:
            self._accept()
            return
        if sock is self._wake_r:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
            return
        assert isinstance(sock, socket.socket)
        conn = self._conns.get(sock)
        if conn is None:
            return
        try:
            if conn.state == "reading" and events & selectors.EVENT_READ:
                self._read(conn)
            elif conn.state == "writing" and events & selectors.EVENT_WRITE:
                self._write(conn)
        except Exception as exc:  # noqa: BLE001 - one connection must never stop the loop
            self.refusals.note("internal_error")
            log.debug("http_connection_error", error=repr(exc))
            self._close(conn)

    def _accept(self) -> None:
        now = time.monotonic()
        if now < self._accept_paused_until:
            return
        for _ in range(64):  # bounded: other connections get their turn
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.refusals.note("no_file_descriptors")
                    if not self._evict(now):
                        self._accept_paused_until = now + 0.05  # no busy spin
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            if len(self._conns) >= self.limits.max_connections and not self._evict(now):
                self.refusals.note("over_capacity")
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, str(addr[0]) if addr else "")
            conn.deadline = now + self.limits.header_timeout
            conn.last_active = now
            self._conns[sock] = conn
            self._watch(conn, selectors.EVENT_READ)

    def _evict(self, now: float) -> bool:
        """Close the connection waiting longest without a complete request; False: none."""
        waiting = [c for c in self._conns.values() if c.state == "reading"]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: c.last_active)
        self.refusals.note("evicted_idle" if not victim.buf else "evicted_incomplete")
        self._close(victim)
        return True

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.registered == events:
            return
        if conn.registered and events:
            self._selector.modify(conn.sock, events, None)
        elif events:
            self._selector.register(conn.sock, events, None)
        else:
            self._selector.unregister(conn.sock)
        conn.registered = events

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock, None) is None:
            return
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = 0
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _expire(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if conn.state == "busy" or now < conn.deadline:
                continue
            if conn.state == "writing":
                self.refusals.note("write_timeout")
            elif conn.buf:
                self.refusals.note("header_timeout")
            elif not conn.keep_alive:
                self.refusals.note("idle_timeout")  # connected, never sent a byte
            self._close(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        now = time.monotonic()
        if not conn.buf and conn.keep_alive:
            conn.deadline = now + self.limits.header_timeout  # a new request's first byte
        conn.buf += data
        conn.last_active = now
        self._parse(conn)

    # --- one request ---

    def _parse(self, conn: _Conn) -> None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > self.limits.max_header_bytes:
                self._refuse(conn, "headers_too_large", _json(431, "request headers too large"))
            return
        if end + 4 > self.limits.max_header_bytes:
            self._refuse(conn, "headers_too_large", _json(431, "request headers too large"))
            return
        head = bytes(conn.buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isalpha():
            self._refuse(conn, "bad_request", _json(400, "bad request line"))
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        lengths: set[str] = set()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                self._refuse(conn, "bad_request", _json(400, "bad header line"))
                return
            headers[name.lower()] = value.strip()
            if name.lower() == "content-length":
                lengths.add(value.strip())
        # Framing, from the head alone.
        if "transfer-encoding" in headers:
            self._refuse(conn, "bad_request", _json(501, "transfer-encoding not supported"))
            return
        length = 0
        if lengths:
            (raw,) = lengths if len(lengths) == 1 else ("",)
            if _CONTENT_LENGTH.fullmatch(raw):
                length = int(raw)
            elif raw.isdigit() and raw.isascii():  # all digits, just too many of them
                length = self.limits.max_body + 1
            else:
                self._refuse(conn, "bad_request", _json(400, "malformed Content-Length"))
                return
        request = Request(method, target.split("?", 1)[0], headers, b"", conn.client)
        route = self.routes.get(request.path)
        if route is None:
            self._refuse(conn, "not_found", _json(404, "not found"))
            return
        if method not in route.methods:
            self._refuse(conn, "method_not_allowed", _json(405, "method not allowed"))
            return
        if route.authorize is not None and not route.authorize(request):
            self._refuse(conn, "forbidden", _json(403, "missing or wrong token"))
            return
        if length > self.limits.max_body:
            self._refuse(conn, "body_too_large", _json(413, "request body too large"))
            return
        if len(conn.buf) < end + 4 + length:
            return  # the (small) body is on its way; the request's deadline still runs
        body = bytes(conn.buf[end + 4 : end + 4 + length])
        del conn.buf[: end + 4 + length]
        connection = headers.get("connection", "").lower()
        keep = version == "HTTP/1.1" and "close" not in connection
        request = Request(method, request.path, headers, body, conn.client)
        self._dispatch(conn, route, request, keep)

    def _dispatch(self, conn: _Conn, route: Route, request: Request, keep: bool) -> None:
        if route.lane == "inline":
            self._respond(conn, self._call(route, request), keep)
            return
        conn.state = "busy"
        self._watch(conn, 0)

        def work() -> None:
            self._done.put((conn, self._call(route, request), keep))
            self._wake()

        if not self._pools[route.lane].submit(work):
            conn.state = "reading"
            self._refuse(conn, "busy", _json(503, "busy"))

    def _call(self, route: Route, request: Request) -> Response:
        try:
            return route.handler(request)
        except Exception as exc:  # noqa: BLE001 - answered as a 500 / the connection closed
            self.refusals.note("internal_error")
            log.error("http_handler_failed", path=request.path, error=repr(exc))
            return _json(500, type(exc).__name__)

    def _finish_done(self) -> None:
        while not self._done.empty():
            conn, response, keep = self._done.get()
            if conn.sock in self._conns:
                self._respond(conn, response, keep)

    def _parse_pipelined(self) -> None:
        pending, self._reparse = self._reparse, []
        for conn in pending:
            if conn.sock in self._conns and conn.state == "reading":
                try:
                    self._parse(conn)
                except Exception as exc:  # noqa: BLE001 - answered as a 500 / the connection closed
                    self.refusals.note("internal_error")
                    log.debug("http_connection_error", error=repr(exc))
                    self._close(conn)

    def _refuse(self, conn: _Conn, reason: str, response: Response) -> None:
        self.refusals.note(reason)
        self._respond(conn, response, keep=False)

    def _respond(self, conn: _Conn, response: Response, keep: bool) -> None:
        head = (
            f"HTTP/1.1 {response.status} {_reason(response.status)}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        conn.out = head.encode("latin-1") + response.body
        conn.keep_alive = keep
        conn.state = "writing"
        conn.deadline = time.monotonic() + self.limits.write_timeout
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        if not conn.keep_alive:
            self._close(conn)
            return
        now = time.monotonic()
        conn.state = "reading"
        conn.last_active = now
        conn.deadline = now + self.limits.idle_timeout
        self._watch(conn, selectors.EVENT_READ)
        if conn.buf:  # a pipelined request, already read: parsed by the loop (no recursion)
            conn.deadline = now + self.limits.header_timeout
            self._reparse.append(conn)
