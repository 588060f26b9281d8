"""Where requests that passed the head checks run, and the count of those that did not."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from agent.logs import get_logger

log = get_logger()


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


class BoundedPool:
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
