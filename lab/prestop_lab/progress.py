"""Progress lines for the lab's long waits: one line per phase change, on stderr.

``[ 12.3s] agent: old-2 preStop started``: seconds since the command started, who (the lab
itself or the strategy being run), what changed. The agent's own JSON log lines are followed
while it runs and told in the same words, so a 20 s drain is not 20 s of silence. ``--json``
turns them off (:data:`QUIET`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from prestop_lab.procs import Proc


class Progress:
    """Prints progress lines; safe to call from several threads."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._stream = stream
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def say(self, who: str, text: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.monotonic() - self._started:5.1f}s] {who}: {text}"
        # Resolved at each call: click's test runner swaps sys.stderr after we were made.
        stream = self._stream or sys.stderr
        with self._lock:
            print(line, file=stream, flush=True)

    def follow(self, proc: Proc, who: str, pod: str = "") -> Follower:
        """Tell the agent's log events from ``proc`` as they arrive, until the block ends."""
        return Follower(self, proc, who, pod)


QUIET = Progress(enabled=False)


class Follower:
    """A thread telling what the agent logs (``with progress.follow(proc, ...):``)."""

    def __init__(self, progress: Progress, proc: Proc, who: str, pod: str) -> None:
        self.progress = progress
        self.proc = proc
        self.who = who
        self.prefix = f"{pod} " if pod else ""
        self._seen = len(proc.lines)  # a sidecar's lines from before this drain are old news
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{proc.name}", daemon=True)

    def __enter__(self) -> Follower:
        if self.progress.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(2)
        if self.progress.enabled:
            self._drain_lines()  # what arrived between the last poll and the process's exit

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._drain_lines()

    def _drain_lines(self) -> None:
        lines = self.proc.lines
        # procs.Proc trims long outputs from the front; start over rather than skip lines.
        self._seen = min(self._seen, len(lines))
        new, self._seen = lines[self._seen :], len(lines)
        for line in new:
            text = describe(line)
            if text:
                self.progress.say(self.who, self.prefix + text)


def _s(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "?"


# The agent's log events worth a line, and how to say them.
_EVENTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "instance_taken_out": lambda e: f"taken out of the registry ({e.get('method', '?')})",
    "instance_invisible": lambda e: (
        f"consumers' list no longer has it (after {_s(e.get('time_to_invisible_s'))})"
    ),
    "instance_still_visible": lambda e: f"consumers still see it after {_s(e.get('waited_s'))}",
    "instance_not_found": lambda e: "not found in the registry: nothing taken out",
    "take_out_failed": lambda e: (
        f"take-out failed ({e.get('error_type', 'error')}), draining anyway"
    ),
    "drain_window": lambda e: (
        f"draining: quiet window {_s(e.get('quiet_window_s'))}"
        + (
            f" ({e['rate_before']:.1f} req/s before the take-out)"
            if isinstance(e.get("rate_before"), (int, float))
            else ""
        )
    ),
    "drain_without_signal": lambda e: "no traffic signal: waited the cap",
    "consumer_let_go": lambda e: f"consumer {e.get('consumer')} let go",
    "app_shutdown_triggered": lambda e: f"shutdown: {e.get('detail') or e.get('how')}",
    "app_stopped": lambda e: f"app stopped, port closed after {_s(e.get('stopped_after_s'))}",
    "app_not_stopped": lambda e: "the app did not stop",
    "deregistered": lambda e: "deregistered after the stop",
}


def describe(line: str) -> str | None:
    """One agent JSON log line as a progress line's text; None for lines not worth one."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    name = event.get("event")
    if name == "phase_done" and event.get("phase") == "drain":
        return f"drain done after {_s(event.get('duration_s'))}"
    tell = _EVENTS.get(name) if isinstance(name, str) else None
    return tell(event) if tell else None
