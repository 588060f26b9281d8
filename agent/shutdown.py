"""Asking the app to stop (actuator POST, a signal, or nothing) and confirming that it stopped.

Both halves sit behind one seam, :class:`ShutdownAction`: ``trigger`` asks, ``stopped`` says
whether the app is gone. The real actions answer ``stopped`` from the app's port (an
:class:`AppPort`: only a refused connection counts), so the sequence opens no socket itself and
its tests answer with a fake action.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from agent.deadline import Clock, Deadline
from agent.exceptions import ShutdownError
from agent.httpcall import bounded
from agent.logs import get_logger

log = get_logger()


@dataclass(frozen=True)
class Triggered:
    how: str  # "actuator", "signal", "none"
    detail: str


class ShutdownAction(Protocol):
    """What the sequence needs to stop the app and to confirm that it stopped."""

    name: str

    @property
    def port(self) -> int:
        """The app's port, named in the report of an app that did not stop."""
        ...

    def trigger(self, deadline: Deadline) -> Triggered: ...

    def stopped(self, deadline: Deadline) -> bool:
        """Whether the app has stopped (its port refuses connections)."""
        ...


class AppProbe(Protocol):
    """Where the real actions look to confirm a stop (a fake in the fault lab)."""

    @property
    def port(self) -> int: ...

    def closed(self, deadline: Deadline) -> bool: ...


@dataclass(frozen=True)
class AppPort:
    """The app's port on this host: closed once it refuses connections."""

    host: str
    port: int

    def closed(self, deadline: Deadline) -> bool:
        return not port_open(self.host, self.port, deadline.timeout(0.5))


class _ConfirmedByPort:
    """``stopped`` and ``port`` of every real action: the app's port tells."""

    def __init__(self, app: AppProbe) -> None:
        self.app = app

    @property
    def port(self) -> int:
        return self.app.port

    def stopped(self, deadline: Deadline) -> bool:
        return self.app.closed(deadline)


class ActuatorShutdown(_ConfirmedByPort):
    """POST {actuator}/shutdown, Spring Boot's graceful close of the application context."""

    name = "actuator"

    def __init__(
        self, actuator_url: str, http: httpx.Client, *, app: AppProbe, http_timeout: float = 3.0
    ):
        super().__init__(app)
        self.url = actuator_url.rstrip("/") + "/shutdown"
        self._http = http
        self._http_timeout = http_timeout

    def trigger(self, deadline: Deadline) -> Triggered:
        with bounded(deadline, self._http_timeout, f"POST {self.url}", ShutdownError) as t:
            try:
                # Only the status line matters: the body is never read, so a broken one (bad
                # gzip, garbage) cannot turn a delivered shutdown request into an error.
                with self._http.stream("POST", self.url, timeout=t) as response:
                    status = response.status_code
            except httpx.ConnectError:
                # Nothing listens any more: the app is already down (hooks can run twice).
                return Triggered("actuator", "connection refused: already stopped")
        if status == 404:
            raise ShutdownError(
                f"POST {self.url} -> 404: enable it with management.endpoint.shutdown.enabled="
                "true (access: unrestricted on Boot 3.4+) and expose 'shutdown'"
            )
        if status >= 400:
            raise ShutdownError(f"POST {self.url} -> HTTP {status}")
        return Triggered("actuator", f"POST {self.url} -> {status}")


def find_pids(target: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs for a numeric PID or a process name (matched on comm, then argv[0]'s basename)."""
    if target.isdigit():
        return [int(target)]
    found: list[int] = []
    me = os.getpid()
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if target in (comm, os.path.basename(argv0)):
            found.append(int(entry.name))
    return sorted(found)


class SignalShutdown(_ConfirmedByPort):
    """SIGTERM to a PID or to every process of a name (for images whose PID 1 is a shell)."""

    name = "signal"

    def __init__(self, target: str, *, app: AppProbe, sig: int = signal.SIGTERM) -> None:
        super().__init__(app)
        self.target = target
        self.sig = sig

    def trigger(self, deadline: Deadline) -> Triggered:
        pids = find_pids(self.target)
        if not pids:
            return Triggered("signal", f"no process matches {self.target!r}: already stopped")
        sent: list[int] = []
        for pid in pids:
            try:
                os.kill(pid, self.sig)
                sent.append(pid)
            except ProcessLookupError:
                continue
            except PermissionError:
                raise ShutdownError(
                    f"not allowed to signal PID {pid}; run as the app's user or share its "
                    "process namespace (shareProcessNamespace: true)"
                ) from None
        if not sent:
            return Triggered("signal", f"{self.target!r} exited before the signal")
        return Triggered("signal", f"{signal.Signals(self.sig).name} to PID {sent}")


class NoShutdown(_ConfirmedByPort):
    """Leave stopping to kubelet's SIGTERM after the hook returns."""

    name = "none"

    def trigger(self, deadline: Deadline) -> Triggered:
        return Triggered("none", "left to kubelet's SIGTERM")


def port_open(host: str, port: int, timeout: float) -> bool:
    """Whether something is still there: only a refused connection counts as stopped."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):
        return False
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(max(0.05, timeout))
        sock.connect(address)
        return True
    except ConnectionRefusedError:
        return False
    except OSError:
        # A timeout means a full backlog or a frozen process, not a stopped one.
        return True
    finally:
        sock.close()


def wait_until_stopped(
    action: ShutdownAction, deadline: Deadline, clock: Clock, *, interval: float = 0.1
) -> float | None:
    """Seconds until ``action`` saw the app stopped, or None if it still runs at the deadline."""
    start = clock.now()
    while True:
        if action.stopped(deadline):
            return clock.now() - start
        if deadline.remaining() <= interval:
            return None
        clock.sleep(interval)
