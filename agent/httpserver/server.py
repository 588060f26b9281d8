"""The server's event loop: one thread owns every socket (see :mod:`agent.httpserver`)."""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Literal

from agent.httpserver.head import Refused, decide
from agent.httpserver.messages import (
    Limits,
    Request,
    Response,
    Route,
    error_response,
    reason_phrase,
)
from agent.httpserver.workers import BoundedPool, RefusalLog
from agent.logs import get_logger

log = get_logger()


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
            "pool": BoundedPool(self.limits.pool_workers, self.limits.pool_queue, "http-pool"),
            "own": BoundedPool(self.limits.own_workers, 0, "http-own"),
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
        decided = decide(conn.buf, self.limits, self.routes, conn.client)
        if decided is None:
            return
        if isinstance(decided, Refused):
            self._refuse(conn, decided.reason, decided.response)
            return
        del conn.buf[: decided.size]
        self._dispatch(conn, decided.route, decided.request, decided.keep_alive)

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
            self._refuse(conn, "busy", error_response(503, "busy"))

    def _call(self, route: Route, request: Request) -> Response:
        try:
            return route.handler(request)
        except Exception as exc:  # noqa: BLE001 - answered as a 500 / the connection closed
            self.refusals.note("internal_error")
            log.error("http_handler_failed", path=request.path, error=repr(exc))
            return error_response(500, type(exc).__name__)

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
            f"HTTP/1.1 {response.status} {reason_phrase(response.status)}\r\n"
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
