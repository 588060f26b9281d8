"""structlog set-up: JSON lines when not on a TTY, stable snake_case event names.

A preStop hook's output never reaches ``kubectl logs``, so every line can also be written to
PID 1's stdout (the container's log stream) when that is writable and not already our stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import MutableMapping
from typing import IO, Any, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.typing import EventDict, WrappedLogger

PID1_STDOUT = "/proc/1/fd/1"
_opened: list[IO[str]] = []  # streams configure() opened, closed when it runs again


class TeeLogger:
    """Writes each rendered line to the console stream and, as JSON, to extra streams."""

    def __init__(self, console: TextIO, extra: list[IO[str]], console_json: bool) -> None:
        self._console = console
        self._extra = extra
        self._console_json = console_json

    def msg(self, *, json_line: str, console_line: str) -> None:
        self._write(self._console, json_line if self._console_json else console_line)
        for stream in self._extra:
            self._write(stream, json_line)

    @staticmethod
    def _write(stream: IO[str], line: str) -> None:
        # Logging must never break a shutdown: a closed pipe just loses the line.
        with contextlib.suppress(OSError, ValueError):
            stream.write(line + "\n")
            stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


# The secrets of this run (passwords, tokens): masked wherever they would appear in output,
# including a server's answer that echoes the login form back into an error message.
_SECRETS: set[str] = set()
MASK = "***"


def register_secret(value: str | None, *, unless: str | None = None) -> None:
    """Mask ``value`` (and its URL-encoded forms) in every log line and summary from now on.

    ``unless``: a public value it may equal (a password that is the user name is no secret);
    values of fewer than 4 characters are not masked, as they would blank out ordinary words.
    """
    if not value or len(value) < 4 or value == unless:
        return
    _SECRETS.update({value, quote(value, safe=""), quote_plus(value)})


def forget_secrets() -> None:
    """Tests only: a process that runs several configurations starts each one clean."""
    _SECRETS.clear()


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    return json_safe(event) if _SECRETS else event


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` with every float that JSON cannot carry (NaN, ±Infinity) replaced by None.

    Containers are copied (tuples and sets become lists), keys become strings, anything else
    that JSON does not know becomes its ``str()``; nesting deeper than 50 levels is cut off.
    """
    if isinstance(value, str):
        return redact(value) if _SECRETS else value
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _depth >= 50:
        return "..."
    if isinstance(value, dict):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1) for v in value]
    return str(value)


def dumps(value: Any) -> str:
    """One compact line of strict JSON (no NaN or Infinity), whatever ``value`` holds."""
    return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False)


def _render_both(console_json: bool) -> structlog.typing.Processor:
    console = structlog.dev.ConsoleRenderer(colors=False)

    def render(logger: WrappedLogger, name: str, event_dict: EventDict) -> dict[str, str]:
        json_line = dumps(event_dict)
        console_line = json_line if console_json else str(console(logger, name, dict(event_dict)))
        return {"json_line": json_line, "console_line": console_line}

    return render


def _same_file(a: IO[str], path: str) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# PID 1 names that mean a machine's init, not a container's process: its stdout is a console
# nobody reads (or a journal), never `kubectl logs`.
_MACHINE_INITS = frozenset({"systemd", "init", "upstart", "launchd", "openrc-init", "runit"})
PID1_COMM = "/proc/1/comm"


def pid1_is_a_machine_init() -> bool:
    try:
        with open(PID1_COMM, encoding="utf-8", errors="replace") as f:
            return f.read().strip() in _MACHINE_INITS
    except OSError:
        return False


def open_pid1_stdout(console: TextIO) -> IO[str] | None:
    """PID 1's stdout for appending, or None when we are PID 1, it is ours, not writable, or
    PID 1 is a machine's init (a VM, a developer's laptop) rather than the container's process."""
    if os.getpid() == 1 or not os.access(PID1_STDOUT, os.W_OK) or pid1_is_a_machine_init():
        return None
    if _same_file(console, PID1_STDOUT) or _same_file(sys.stdout, PID1_STDOUT):
        return None
    try:
        return open(PID1_STDOUT, "a", encoding="utf-8")  # lives as long as the process
    except OSError:
        return None


def level_of(name: str) -> int:
    """A ``--log-level`` name as a logging level."""
    return {"debug": logging.DEBUG, "warning": logging.WARNING, "error": logging.ERROR}.get(
        name, logging.INFO
    )


def configure(
    *,
    log_format: str = "auto",
    to_pid1: bool = False,
    stream: TextIO | None = None,
    level: int = logging.INFO,
) -> None:
    """Configure structlog for the whole process (idempotent; the last call wins)."""
    console = stream if stream is not None else sys.stderr
    is_tty = hasattr(console, "isatty") and console.isatty()
    console_json = log_format == "json" or (log_format == "auto" and not is_tty)
    while _opened:
        with contextlib.suppress(OSError):
            _opened.pop().close()
    extra: list[IO[str]] = []
    if to_pid1:
        pid1 = open_pid1_stdout(console)
        if pid1 is not None:
            extra.append(pid1)
            _opened.append(pid1)
    tee = TeeLogger(console, extra, console_json)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
            _render_both(console_json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: tee,
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger
