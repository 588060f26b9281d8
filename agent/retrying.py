"""The one place retry policies are built: transient errors only, jittered, inside the Deadline.

Retrying a registry write is safe and honest: a write whose answer was lost (timeout, dropped
connection, 5xx) is read back by the adapter before it raises, and counts as done when the
instance is already in the wanted state (``TakeOut.write_unconfirmed``); only an instance read
back in the old state, or unreadable, comes here as ``RegistryUnavailable``. The adapter
remembers such a write, so the retry that then finds the instance out does not call it
``already_out``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from agent.deadline import Deadline
from agent.exceptions import RegistryUnavailable

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (RegistryUnavailable,)


def call_with_retries(
    fn: Callable[[], T],
    deadline: Deadline,
    *,
    attempts: int = 4,
    initial_wait: float = 0.2,
    max_wait: float = 2.0,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call ``fn``; retry transient errors while attempts and the deadline allow.

    The last error is re-raised as itself, so callers see our exception tree, not tenacity's.
    """

    def stop(state: tenacity.RetryCallState) -> bool:
        upcoming = state.upcoming_sleep or 0.0
        # No point sleeping into the deadline: the next attempt would have no time left.
        return state.attempt_number >= attempts or deadline.remaining() <= upcoming + 0.05

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(state.attempt_number, exc)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(transient),
        stop=stop,
        # Spelled out (not wait_exponential_jitter) so it means the same on tenacity 8 and 9.
        wait=tenacity.wait_exponential(multiplier=initial_wait, max=max_wait)
        + tenacity.wait_random(0, 0.1),
        sleep=deadline.sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
    return retrying(fn)
