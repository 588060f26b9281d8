"""What the lab's emulators share: an HTTP server on loopback plus a background timer thread."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T", bound="LoopbackServer")


class LoopbackServer:
    """Serve ``self._server`` and run ``_background`` until stopped; a context manager."""

    _server: ThreadingHTTPServer

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Completed background ticks: tests on a fake clock wait for a tick instead of a while.
        self.ticks = 0

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}),
            threading.Thread(target=self._background),
        ]
        for t in self._threads:
            t.daemon = True
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            t.join(2)

    def __enter__(self: T) -> T:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _background(self) -> None:
        """Timers (cache ticks, expiry); runs every 20 ms until stop()."""
        while not self._stop.wait(0.02):
            self.tick()
            self.ticks += 1

    def tick(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port
