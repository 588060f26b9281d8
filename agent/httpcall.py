"""The one bounded HTTP call: every adapter and signal sends through :func:`bounded`.

In the spirit of httpx's own ``request_context``: a small context manager around the request
(and whatever of the answer is read inside it) that

* takes the timeout from the one Deadline, at most the caller's cap, and raises
  :class:`~agent.exceptions.DeadlineExceeded` instead of sending when no time is left;
* turns everything a request can raise before its answer is usable
  (:data:`~agent.exceptions.HTTP_FAILURES`: transport errors, a bad gzip body, a host that
  fails IDNA encoding, an unknown charset) into the caller's own error, named by ``what`` and
  the httpx error's type only: a URL can carry credentials, an error's text can carry a body.

Status codes stay the caller's business: what a 404 means differs between a registry, a signal
and an actuator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agent.deadline import Deadline
from agent.exceptions import HTTP_FAILURES

# httpx decodes a body's text lazily: an unknown charset surfaces as LookupError.
_FAILURES: tuple[type[Exception], ...] = (*HTTP_FAILURES, LookupError)


@contextmanager
def bounded(
    deadline: Deadline, cap: float, what: str, fail: Callable[[str], Exception]
) -> Iterator[float]:
    """Yield the timeout for one call; a failed call raises ``fail("<what>: <ErrorType>")``.

    Keep only the request and the reading of its body inside: a ``KeyError`` of the caller's
    own parsing would otherwise pass for an unknown charset.
    """
    timeout = deadline.left_for(what, cap)
    try:
        yield timeout
    except _FAILURES as exc:
        raise fail(f"{what}: {type(exc).__name__}") from None


def send(
    http: httpx.Client,
    method: str,
    url: str,
    deadline: Deadline,
    cap: float,
    fail: Callable[[str], Exception],
    *,
    what: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One bounded request whose answer is read whole (``what`` defaults to ``METHOD url``)."""
    with bounded(deadline, cap, what or f"{method} {url}", fail) as timeout:
        return http.request(method, url, timeout=timeout, **kwargs)
