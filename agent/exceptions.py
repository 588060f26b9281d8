"""The agent's exception tree. Adapters translate library errors (httpx, OS) into these.

::

    AgentError
    ├── ConfigError               bad flag or env value; exit 2, nothing touched
    ├── DeadlineExceeded          the budget ran out before a step could finish
    ├── RegistryError             anything the registry step can fail with (fail open)
    │   ├── RegistryUnavailable   transport error, 5xx or 503 on every address (transient: retried)
    │   ├── AuthError             login refused or a token not accepted after a re-login
    │   ├── InstanceNotFound      our ip:port is not registered: nothing is written
    │   └── RegistryRejected      a 4xx we did not expect (the message says which call)
    └── ShutdownError             the app could not be asked to stop

Server answers are parsed into typed values at the edge: :data:`HTTP_FAILURES` is everything a
request can raise before an answer is usable (transport, bad gzip, an address whose host fails
IDNA encoding), and :func:`json_of` turns any unreadable body into a ``ValueError``.
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
    """The budget ran out."""


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


class ShutdownError(AgentError):
    """The app's shutdown could not be triggered."""
