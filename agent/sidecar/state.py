"""What the sidecar has done and is doing: read by /readyz and /metrics, written by its work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agent.holdstate import HoldFile
from agent.logs import get_logger
from agent.sequence import Outcome

log = get_logger()


class SingleFlight:
    """Runs ``fn`` once; every caller, during or after the run, gets that run's result."""

    def __init__(self, fn: Callable[[], Outcome]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.started = False
        self.result: Outcome | None = None
        self.error: BaseException | None = None

    def run(self) -> tuple[Outcome | None, BaseException | None]:
        with self._lock:
            first = not self.started
            self.started = True
        if first:
            try:
                self.result = self._fn()
            except Exception as exc:  # reported to every caller as a 500
                self.error = exc
                log.exception("prestop_run_failed", error=str(exc))
            finally:
                self._done.set()
        self._done.wait()
        return self.result, self.error


@dataclass
class SidecarState:
    draining: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)  # SIGTERM: wind down
    holding: bool = False  # the start-up hold keeps the instance out right now
    hold_seconds: float | None = None  # how long the finished hold kept it out
    repaired: bool = False  # a stale disable was undone at start-up
    warmup_progress: float = 0.0


class HoldRecord:
    """The hold record (:mod:`agent.holdstate`), kept going without one if it cannot be written."""

    def __init__(self, holds: HoldFile) -> None:
        self.file = holds

    @property
    def pod(self) -> str:
        return self.file.pod

    def write(self, holder: Literal["startup", "drain"], reason: str) -> None:
        try:
            self.file.write(holder, reason)
        except OSError as exc:
            # Without the record a restarted sidecar cannot tell whose hold this is: say so,
            # and go on as without --state-dir rather than read back a record that is not there.
            log.warning("hold_state_write_failed", holder=holder, error=str(exc))
            self.file = HoldFile(None, self.file.instance, self.file.pod)

    def clear(self) -> None:
        try:
            self.file.clear()
        except OSError as exc:
            log.warning("hold_state_write_failed", holder=None, error=str(exc))
