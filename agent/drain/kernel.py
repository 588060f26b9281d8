"""Traffic from the kernel's TCP socket table: a signal that needs no change to the app.

Netlink sock_diag (inet_diag, read through pyroute2) lists the TCP sockets of the network
namespace with per-socket ``tcp_info``. Only the network namespace matters, so this works from the
app container and from a sidecar sharing the pod's network (no shared PID namespace needed),
unprivileged. Both families are dumped: an app listening on ``::`` serves IPv4 clients through
AF_INET6 sockets with v4-mapped addresses.

What is counted, on the server-side sockets whose local port is the app's port:

* states ESTABLISHED and CLOSE_WAIT. CLOSE_WAIT is a client that has sent FIN while the app has
  not closed yet: usually an idle keep-alive the client gave up, but a half-closing client may
  still be waiting for its answer. FIN_WAIT*, LAST_ACK and CLOSING mean the app has closed its
  side, so it has nothing left to do there; SYN_RECV has carried no data.
* ``requests``: an activity counter that only grows: +1 for a connection first seen with data
  received, +1 whenever a known connection has received more bytes since the last read (a new
  request on a keep-alive connection). Several requests on one connection between two reads
  count once: it is a lower bound on requests, which is all the drain policy needs ("something
  new arrived"). A connection that opens, is served and closes between two reads is never seen;
  the Prometheus signal covers those.
* ``in_flight``: connections whose last received data is newer than their last answer, i.e. a
  request is being worked on. Idle keep-alive connections are quiet, not busy, which is where
  drains that count open connections go wrong.

Not thread-safe: one drain reads one signal.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.deadline import Deadline
from agent.drain.signals import Reading, SignalUnavailable

# linux/tcp_states.h; the dump request takes a bit mask of them.
TCP_ESTABLISHED = 1
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_CLOSING = 11
SERVED_STATES = frozenset({TCP_ESTABLISHED, TCP_CLOSE_WAIT})
# States in which the peer's FIN has arrived: it advanced bytes_received and rqueue by one.
_FIN_RECEIVED = frozenset({TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING})
_INET_DIAG_INFO = 2  # extension numbers are 1-based in the request's bit mask
_NO_TIME = 0.01  # seconds: below this a read would only make the caller late


@dataclass(frozen=True)
class TcpInfo:
    """The ``tcp_info`` fields used here (times in ms before the dump, kernel-tick resolution)."""

    bytes_received: int  # includes one for a received FIN
    bytes_acked: int  # bytes we sent that the peer acknowledged
    last_data_recv_ms: int
    last_data_sent_ms: int


@dataclass(frozen=True)
class TcpSocket:
    """One socket of a sock_diag dump, in the terms of the socket's own end."""

    local: str
    local_port: int
    remote: str
    remote_port: int
    state: int = TCP_ESTABLISHED
    inode: int = 0  # 0 until the app accept()s the connection
    cookie: int = 0  # stable for the socket's life, unlike the inode
    rqueue: int = 0  # received, not yet read by the app (plus one for a FIN)
    wqueue: int = 0  # written by the app, not yet acknowledged by the peer
    info: TcpInfo | None = None


class SockDiag(Protocol):
    """An open sock_diag session (the seam unit tests replace)."""

    def tcp_sockets(self, states: int) -> Iterable[TcpSocket]:
        """TCP sockets of both families in the given states (a bit mask of 1 << state)."""
        ...

    def close(self) -> None: ...


DiagFactory = Callable[[], SockDiag]


class _NlMessage(Protocol):
    """The part of a pyroute2 message used here (pyroute2 ships no type information)."""

    def __getitem__(self, key: str) -> Any: ...

    def get_attr(self, name: str) -> Any: ...


def _tcp_info(message: _NlMessage) -> TcpInfo | None:
    info = message.get_attr("INET_DIAG_INFO")
    if info is None:
        return None
    try:
        return TcpInfo(
            bytes_received=int(info["tcpi_bytes_received"]),
            bytes_acked=int(info["tcpi_bytes_acked"]),
            last_data_recv_ms=int(info["tcpi_last_data_recv"]),
            last_data_sent_ms=int(info["tcpi_last_data_sent"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # a tcp_info too short for the byte counters (Linux < 4.1)


def _tcp_socket(message: _NlMessage) -> TcpSocket:
    return TcpSocket(
        local=str(message["idiag_src"]),
        local_port=int(message["idiag_sport"]),
        remote=str(message["idiag_dst"]),
        remote_port=int(message["idiag_dport"]),
        state=int(message["idiag_state"]),
        inode=int(message["idiag_inode"]),
        cookie=int(message["idiag_cookie"]),
        rqueue=int(message["idiag_rqueue"]),
        wqueue=int(message["idiag_wqueue"]),
        info=_tcp_info(message),
    )


class NetlinkSockDiag:
    """sock_diag through pyroute2; every failure to read surfaces as SignalUnavailable."""

    def __init__(self) -> None:
        try:
            # Imported here, not at module load: pyroute2 is big, and only a drain needs it.
            from pyroute2 import DiagSocket  # type: ignore[import-untyped]
            from pyroute2.netlink.exceptions import (  # type: ignore[import-untyped]
                NetlinkDecodeError,
                NetlinkError,
            )
        except ImportError as exc:
            raise SignalUnavailable(f"pyroute2 is not importable: {exc}") from None
        self._errors: tuple[type[BaseException], ...] = (
            OSError,
            NetlinkError,
            NetlinkDecodeError,
        )
        try:
            self._diag: Any = DiagSocket()
            self._diag.bind()
        except self._errors as exc:
            raise SignalUnavailable(f"netlink sock_diag: {_reason(exc)}") from None

    def tcp_sockets(self, states: int) -> Iterable[TcpSocket]:
        sockets: list[TcpSocket] = []
        try:
            for family in (socket.AF_INET, socket.AF_INET6):
                messages = self._diag.get_sock_stats(
                    family=family,
                    states=states,
                    protocol=socket.IPPROTO_TCP,
                    extensions=1 << (_INET_DIAG_INFO - 1),
                )
                sockets.extend(_tcp_socket(m) for m in messages)
        except self._errors as exc:
            raise SignalUnavailable(f"netlink sock_diag: {_reason(exc)}") from None
        return sockets

    def close(self) -> None:
        self._diag.close()


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(f"{type(exc).__name__}: {text}".split())  # one line for the log


def own_socket_inodes() -> frozenset[int]:
    """Inodes of this process's sockets, from /proc/self/fd (empty where that is unreadable)."""
    inodes: set[int] = set()
    try:
        entries = os.listdir("/proc/self/fd")
    except OSError:
        return frozenset()
    for fd in entries:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[8:-1]))
    return frozenset(inodes)


def _address(text: str) -> str:
    """One spelling per address, so both ends of a v4 connection to a v6 listener compare."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


_Key = tuple[str, int, int]  # remote address, remote port, cookie
_FourTuple = tuple[str, int, str, int]  # local address, local port, remote address, remote port


@dataclass(frozen=True)
class _Seen:
    received: int  # payload bytes received, FIN left out
    written: int  # bytes the app has written: acknowledged plus still queued
    pending: bool  # the last data received is not answered yet


def _payload(sock: TcpSocket, info: TcpInfo) -> tuple[int, int]:
    """Bytes received and not yet read, without the FIN's sequence number."""
    fin = 1 if sock.state in _FIN_RECEIVED else 0
    return max(0, info.bytes_received - fin), max(0, sock.rqueue - fin)


def _pending(info: TcpInfo, received: int, written: int, before: _Seen | None) -> bool:
    """Whether the last data received came after the last the app wrote: unanswered."""
    if received == 0:
        return False
    if written == 0:
        # Never answered. Needed because the kernel stamps last-received and last-sent with the
        # same tick when the connection is set up, so an immediate request ties with it.
        return True
    if before is not None and written == before.written:
        # Nothing written since the last read: new bytes in are unanswered, and with none the
        # earlier verdict stands (it may have come from this rule, better than the ticks).
        return received > before.received or before.pending
    if before is not None and received == before.received:
        return False  # wrote since the last read, received nothing: answered
    # Both moved since the last read (or first sight): only the timestamps can order them. At
    # tick resolution (1-4 ms) an answer and the next request may tie; that reads as answered,
    # because the opposite would hold every fast, then idle, keep-alive connection busy forever.
    return info.last_data_recv_ms < info.last_data_sent_ms


class KernelSocketSignal:
    """Arrivals and in-flight requests on ``port`` from the kernel's TCP socket table."""

    name = "kernel"

    def __init__(
        self,
        port: int,
        *,
        exclude_own: bool = True,
        diag_factory: DiagFactory = NetlinkSockDiag,
        own_inodes: Callable[[], frozenset[int]] = own_socket_inodes,
    ) -> None:
        self.port = port
        self.exclude_own = exclude_own
        self._diag_factory = diag_factory
        self._own_inodes = own_inodes
        self._requests = 0
        self._seen: dict[_Key, _Seen] = {}
        self._own_keys: set[_Key] = set()

    def read(self, deadline: Deadline) -> Reading:
        if deadline.remaining() <= _NO_TIME:
            raise SignalUnavailable("no time left")
        # Listing our sockets on both sides of the dump: one created just before it is in the
        # dump, and must be known as ours even if it closes before the second listing.
        before = self._own_inodes() if self.exclude_own else frozenset()
        sockets = self._dump()
        ours = before | self._own_inodes() if self.exclude_own else frozenset()
        return self._fold(sockets, ours)

    def _dump(self) -> list[TcpSocket]:
        states = 0
        for state in SERVED_STATES:
            states |= 1 << state
        try:
            diag = self._diag_factory()
            try:
                return list(diag.tcp_sockets(states))
            finally:
                diag.close()
        except OSError as exc:
            raise SignalUnavailable(f"netlink sock_diag: {_reason(exc)}") from None

    def _fold(self, sockets: list[TcpSocket], ours: frozenset[int]) -> Reading:
        # The agent itself talks to this port (it scrapes the app's metrics there), and those
        # requests must not read as traffic that keeps the drain waiting. Our client sockets
        # are the ones whose inode is in /proc/self/fd; the server-side sockets to leave out are
        # their peers, found by the reversed 4-tuple. Our own inodes alone would not do: where
        # the server's sockets also belong to this process (tests), they would hide everything.
        own_peers: set[_FourTuple] = {
            (_address(s.remote), s.remote_port, _address(s.local), s.local_port)
            for s in sockets
            if s.inode and s.inode in ours
        }
        seen: dict[_Key, _Seen] = {}
        own_keys: set[_Key] = set()
        in_flight = 0
        for sock in sockets:
            if sock.local_port != self.port or sock.state not in SERVED_STATES:
                continue
            remote = _address(sock.remote)
            key = (remote, sock.remote_port, sock.cookie)
            # Remembered by cookie: once our client has closed, its peer lingers in CLOSE_WAIT
            # with no client socket left to match.
            if key in self._own_keys or (
                (_address(sock.local), sock.local_port, remote, sock.remote_port) in own_peers
            ):
                own_keys.add(key)
                continue
            if sock.info is None:
                raise SignalUnavailable("the kernel gives no tcp_info byte counters (Linux < 4.1)")
            received, unread = _payload(sock, sock.info)
            earlier = self._seen.get(key)
            if received > (earlier.received if earlier else 0):
                self._requests += 1
            written = sock.info.bytes_acked + sock.wqueue
            pending = _pending(sock.info, received, written, earlier)
            # Also busy while the app has not read a request yet or its answer is still going
            # out; those pass by themselves, so they are not part of the remembered verdict.
            if pending or unread or sock.wqueue:
                in_flight += 1
            seen[key] = _Seen(received, written, pending)
        self._seen, self._own_keys = seen, own_keys
        return Reading(requests=float(self._requests), in_flight=float(in_flight))

    @staticmethod
    def available(diag_factory: DiagFactory = NetlinkSockDiag) -> tuple[bool, str]:
        """Whether sock_diag can be read here, and if not, why (for "auto" and diagnostics)."""
        try:
            diag = diag_factory()
            try:
                list(diag.tcp_sockets(1 << TCP_ESTABLISHED))
            finally:
                diag.close()
        except SignalUnavailable as exc:
            return False, str(exc)
        except OSError as exc:
            return False, f"netlink sock_diag: {_reason(exc)}"
        return True, ""
