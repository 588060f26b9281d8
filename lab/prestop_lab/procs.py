"""Starting the lab's real processes and waiting for their ready lines."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_LINES = 20_000


def free_port() -> int:
    """A port that was free a moment ago on loopback (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    """A child process whose output lines are collected by a reader thread."""

    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _marker: str = ""
    _reader: threading.Thread = field(default_factory=threading.Thread)

    def wait_ready(self, timeout: float) -> str:
        if not self._ready.wait(timeout):
            self.kill()
            tail = "\n".join(self.lines[-10:])
            raise RuntimeError(f"{self.name} did not print {self._marker!r} in {timeout}s:\n{tail}")
        return next(line for line in self.lines if self._marker in line)

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait(5)
        self._reader.join(2)

    @property
    def pid(self) -> int:
        return self.popen.pid


def start(
    name: str,
    argv: Sequence[str],
    *,
    ready_marker: str = "",
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Proc:
    """Start ``argv`` with stdout and stderr merged into ``Proc.lines``."""
    popen = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        bufsize=1,
        cwd=cwd,
    )
    proc = Proc(name, popen, _marker=ready_marker)

    def read() -> None:
        assert popen.stdout is not None
        with popen.stdout:
            for line in popen.stdout:
                proc.lines.append(line.rstrip("\n"))
                if len(proc.lines) > MAX_LINES:  # a JVM logs for as long as it runs
                    del proc.lines[: MAX_LINES // 2]
                if ready_marker and ready_marker in line:
                    proc._ready.set()

    proc._reader = threading.Thread(target=read, name=f"read-{name}", daemon=True)
    proc._reader.start()
    if not ready_marker:
        proc._ready.set()
    return proc


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def prestop_argv(*args: str) -> list[str]:
    """The agent as a real subprocess (the same interpreter, so no PATH lookup is needed)."""
    return [sys.executable, "-m", "agent", *args]


def wait_for(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout``."""
    assert callable(predicate)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
