"""Traffic from the kernel's socket table: needs no change to the app at all.

Netlink sock_diag (inet_diag, through pyroute2) lists the ESTABLISHED TCP sockets of the app's
listening port with per-socket counters. It works from the app container and from a sidecar that
shares the pod's network namespace. From them:

* arrivals: +1 for each connection first seen with data received, +1 whenever a known
  connection received more data (a new request on a keep-alive connection);
* in flight: connections that received data more recently than they sent any (a request is
  being answered). Idle keep-alive connections are quiet, not busy: the classic failure of
  connection-count drains does not apply.

The agent's own connections to the port (it scrapes the app's metrics there) are left out: a
server-side socket whose peer is one of this process's client sockets is ours. A connection
that opens, is served and closes between two reads is not seen; the Prometheus signal covers it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.addresses import plain_address
from agent.deadline import Deadline
from agent.drain.signals import READ_FAILURES, ReadFailure, Reading
from agent.exceptions import DeadlineExceeded, SignalUnavailable

TCP_ESTABLISHED = 1
TCP_LISTEN = 10
INET_DIAG_INFO = 2


@dataclass(frozen=True)
class Conn:
    """One TCP socket as the kernel reports it (times in ms since the event)."""

    local_port: int
    peer: str
    peer_port: int
    inode: int
    bytes_received: int
    last_data_recv_ms: int
    last_data_sent_ms: int
    bytes_acked: int = -1  # bytes sent and acknowledged; 0: nothing answered yet
    local: str = ""
    state: int = TCP_ESTABLISHED


def _diag_sockets() -> Iterator[Conn]:
    try:
        from pyroute2 import DiagSocket  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise SignalUnavailable(f"pyroute2 is not installed: {exc}") from None
    try:
        with DiagSocket() as diag:
            diag.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                records = diag.get_sock_stats(
                    family=family,
                    states=(1 << TCP_ESTABLISHED) | (1 << TCP_LISTEN),
                    extensions=1 << (INET_DIAG_INFO - 1),
                )
                for record in records:
                    yield _conn(record)
    except OSError as exc:
        raise SignalUnavailable(f"netlink sock_diag: {exc.strerror or exc}") from None


def _conn(record: Any) -> Conn:
    info = record.get_attr("INET_DIAG_INFO")

    def field(name: str) -> int:
        try:
            return int(info[name]) if info is not None else 0
        except (KeyError, TypeError):
            return 0

    return Conn(
        local_port=int(record["idiag_sport"]),
        peer=str(record["idiag_dst"]),
        peer_port=int(record["idiag_dport"]),
        inode=int(record["idiag_inode"]),
        bytes_received=field("tcpi_bytes_received"),
        last_data_recv_ms=field("tcpi_last_data_recv"),
        last_data_sent_ms=field("tcpi_last_data_sent"),
        bytes_acked=field("tcpi_bytes_acked"),
        local=str(record["idiag_src"]),
        state=int(record["idiag_state"]),
    )


def own_socket_inodes() -> set[int]:
    """Inodes of this process's sockets (from /proc/self/fd)."""
    inodes: set[int] = set()
    try:
        entries = os.listdir("/proc/self/fd")
    except OSError:
        return inodes
    for fd in entries:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class KernelSocketSignal:
    """Arrivals and in-flight requests on ``port`` from the kernel's TCP socket table.

    With ``require_port`` a table with no socket at all on the port (no listener, no
    connection: the app is down or ``--port`` is wrong) is unavailable rather than quiet, so
    that ``prestop check`` does not call the signal answering and a drain does not take an
    empty port for a drained app.
    """

    name = "kernel"

    def __init__(
        self,
        port: int,
        *,
        exclude_own: bool = True,
        list_sockets: Callable[[], Iterable[Conn]] = _diag_sockets,
        own_inodes: Callable[[], set[int]] = own_socket_inodes,
        require_port: bool = False,
    ) -> None:
        self.port = port
        self.exclude_own = exclude_own
        self.require_port = require_port
        self._list = list_sockets
        self._own = own_inodes
        self._seen: dict[tuple[str, int], int] = {}
        self._arrivals = 0

    def read(self, deadline: Deadline) -> Reading:
        deadline.left_for("reading the socket table")
        table = list(self._list())
        conns = [c for c in table if c.state == TCP_ESTABLISHED]
        if self.require_port and not any(c.local_port == self.port for c in table):
            raise SignalUnavailable(f"nothing listens on port {self.port}")
        ours = self._own() if self.exclude_own else set()
        # Our client sockets to the port: the server ends whose peer they are are ours too.
        own_clients = {
            (plain_address(c.local), c.local_port)
            for c in conns
            if c.inode in ours and c.peer_port == self.port
        }
        current: dict[tuple[str, int], int] = {}
        in_flight = 0
        for c in conns:
            key = (plain_address(c.peer), c.peer_port)
            if c.local_port != self.port or c.inode in ours or key in own_clients:
                continue
            # Keyed by the peer, not the inode: the inode is 0 until the app accepts.
            current[key] = c.bytes_received
            before = self._seen.get(key)
            if (before is None and c.bytes_received > 0) or (
                before is not None and c.bytes_received > before
            ):
                self._arrivals += 1
            # A fresh connection's "last sent" can be anything, so "never answered" counts too.
            answered_since = c.bytes_acked != 0 and c.last_data_sent_ms <= c.last_data_recv_ms
            if c.bytes_received > 0 and not answered_since:
                in_flight += 1
        self._seen = current
        return Reading(requests=float(self._arrivals), in_flight=float(in_flight))


class CombinedSignal:
    """Several signals as one: activity in any is activity; in flight is the largest.

    Each component's last good reading stands in when it fails once, so one flaky source does
    not look like a counter reset; only when all fail is the reading unavailable.
    """

    def __init__(self, signals: list[Any]) -> None:
        self.signals = signals
        self._last: dict[int, Reading] = {}

    @property
    def name(self) -> str:
        """The components that have answered (all of them before the first read)."""
        # Components may also settle on a source (FirstAvailable) after the first read.
        used = [s for i, s in enumerate(self.signals) if i in self._last] or self.signals
        return "+".join(s.name for s in used)

    def read(self, deadline: Deadline) -> Reading:
        fresh = 0
        errors: list[ReadFailure] = []
        for i, signal in enumerate(self.signals):
            try:
                self._last[i] = signal.read(deadline)
                fresh += 1
            except READ_FAILURES as exc:
                errors.append(exc)
                continue
        if fresh == 0:
            why = "; ".join(f"{s.name}: {e}" for s, e in zip(self.signals, errors, strict=True))
            if all(isinstance(e, DeadlineExceeded) for e in errors):
                raise DeadlineExceeded(why)
            raise SignalUnavailable(f"no signal answered ({why})")
        readings = list(self._last.values())
        counts = [r.requests for r in readings if r.requests is not None]
        flights = [r.in_flight for r in readings if r.in_flight is not None]
        return Reading(
            requests=sum(counts) if counts else None,
            in_flight=max(flights) if flights else None,
        )
