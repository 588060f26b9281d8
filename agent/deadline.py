"""Time as a dependency: the Clock protocol and the one Deadline every step is bounded by.

Kubernetes starts the grace-period countdown before the preStop hook runs, so every wait and
every HTTP call in the agent takes its timeout from a single Deadline built from ``--budget``.
No I/O here. :meth:`Deadline.left_for` is the one place that says "no time left".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from agent.exceptions import DeadlineExceeded

# Less than this is no time for a call: httpx would time out at once, and the failure would
# look like the other side's.
MIN_CALL = 0.01
# Seconds of the budget kept for logging the summary and exiting: a command bounded by
# ``--budget`` must have ended, not merely stopped waiting, when the budget is up.
EXIT_MARGIN = 0.5


class Clock(Protocol):
    """A monotonic clock and a way to wait on it; tests pass a fake that advances on sleep."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class Deadline:
    """An absolute point on a Clock's timeline; everything derives its timeouts from it."""

    clock: Clock
    at: float

    @classmethod
    def after(cls, clock: Clock, seconds: float) -> Deadline:
        return cls(clock, clock.now() + seconds)

    @classmethod
    def for_budget(cls, clock: Clock, budget: float) -> Deadline:
        """The one way ``--budget`` becomes a Deadline: the budget less the exit margin."""
        return cls.after(clock, max(0.0, budget - EXIT_MARGIN))

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.now())

    def timeout(self, cap: float) -> float:
        """The timeout for one operation: at most ``cap``, never past the deadline."""
        return min(cap, self.remaining())

    def left_for(self, what: str, cap: float = math.inf) -> float:
        """The timeout for one call or read, at most ``cap``; :class:`DeadlineExceeded` when
        (almost) nothing is left, so the caller's error tree is not blamed for the clock."""
        timeout = self.timeout(cap)
        if timeout <= MIN_CALL:
            raise DeadlineExceeded(f"no time left for {what}")
        return timeout

    def sub(self, seconds: float) -> Deadline:
        """A nested deadline that ends ``seconds`` from now or with this one, whichever is first."""
        return Deadline(self.clock, min(self.at, self.clock.now() + max(0.0, seconds)))

    def minus(self, reserve: float) -> Deadline:
        """This deadline moved ``reserve`` seconds earlier, to keep time for later steps."""
        return Deadline(self.clock, self.at - max(0.0, reserve))

    def sleep(self, seconds: float) -> None:
        """Sleep, but never past the deadline."""
        self.clock.sleep(min(seconds, self.remaining()))
