"""The agent's exception tree. Adapters translate library errors (httpx, OS) into these.

::

    AgentError
    ├── ConfigError               bad flag or env value; exit 2, nothing touched
    ├── DeadlineExceeded          no time left for a call or a wait (Deadline.left_for)
    ├── RegistryError             anything the registry step can fail with (fail open)
    │   ├── RegistryUnavailable   transport error, 5xx or 503 on every address (transient: retried)
    │   ├── AuthError             login refused or a token not accepted after a re-login
    │   ├── InstanceNotFound      our ip:port is not registered: nothing is written
    │   └── RegistryRejected      a 4xx we did not expect (the message says which call)
    ├── SignalUnavailable         a traffic signal could not be read this time
    └── ShutdownError             the app could not be asked to stop

Running out of time is raised one way only: :meth:`agent.deadline.Deadline.left_for` raises
:class:`DeadlineExceeded`, for an HTTP call (through :func:`agent.httpcall.bounded`) or any
other read. It is never a registry, signal or shutdown failure: it says nothing about whether
the other side answers, so it is not retried, a drain that runs into it does not report a
missing signal, and the Eureka adapter, which writes server by server, counts it as that
server's failure and keeps what the others did.

Only :class:`RegistryUnavailable` is transient (:mod:`agent.retrying`); every registry error
fails open (the sequence drains and stops the app anyway).

Server answers are parsed into typed values at the edge: :data:`HTTP_FAILURES` is everything a
request can raise before an answer is usable (transport, bad gzip, an address whose host fails
IDNA encoding), :func:`agent.httpcall.bounded` turns those into the caller's error, and
:func:`json_of` turns any unreadable body into a ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import httpx

# What sending a request and reading its answer can raise: httpx's own errors (transport,
# DecodingError for a bad gzip body, TooManyRedirects), InvalidURL, and the idna package's
# UnicodeError that escapes httpx for some hosts (``xn--a``).
HTTP_FAILURES: tuple[type[Exception], ...] = (httpx.HTTPError, httpx.InvalidURL, UnicodeError)


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON; ``ValueError`` for anything unreadable (bad JSON, too deep, bad gzip)."""
    try:
        return response.json()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (ValueError, httpx.HTTPError, LookupError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__})") from None


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """A flag or env value is missing or invalid; the message names the field and the fix."""


class DeadlineExceeded(AgentError):
    """The deadline leaves no time for the next call or read (raised by ``Deadline.left_for``)."""


class RegistryError(AgentError):
    """The registry step failed; the sequence carries on (fail open)."""


class RegistryUnavailable(RegistryError):
    """No registry address answered usefully (network error, timeout, 5xx)."""

    def __init__(self, message: str, *, protocol_errors_only: bool = False) -> None:
        super().__init__(message)
        # Every address answered, but with a broken HTTP answer (not a timeout or a refusal).
        self.protocol_errors_only = protocol_errors_only


class AuthError(RegistryError):
    """The registry refused our credentials or token."""


class InstanceNotFound(RegistryError):
    """The instance is not registered; writing would create a record that never expires."""


class RegistryRejected(RegistryError):
    """The registry answered a request with an unexpected client error."""


class SignalUnavailable(AgentError):
    """A traffic signal could not be read this time (the drain falls back, never fails)."""


class ShutdownError(AgentError):
    """The app's shutdown could not be triggered."""
