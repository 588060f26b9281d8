"""The settings only the sidecar (``prestop serve``, ``prestop ready``) reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.config.defaults import text_default
from agent.config.urls import url, valid_host
from agent.config.values import (
    Lookup,
    Resolved,
    fail,
    generic_fields,
    lookup,
    port,
    read_secret_file,
    resolve,
    seconds,
)
from agent.exceptions import ConfigError
from agent.logs import register_secret

if TYPE_CHECKING:
    from agent.config.load import Config


@dataclass(frozen=True)
class SidecarSettings:
    """Fields named as options are filled from their declaration (see :mod:`agent.config`)."""

    host: str
    port: int
    token: str = field(repr=False)
    health_url: str
    warmup: float
    warmup_start_weight: float
    warmup_curve: Literal["quadratic", "linear"]
    term_linger: float
    startup_hold: bool
    startup_delay: float
    ready_url: str | None
    state_dir: Path | None


def load_state_dir(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> Path | None:
    """``--state-dir``: an existing directory (an emptyDir) for the hold record, or None."""
    raw = resolve("state_dir", flags, environ)
    if raw is None:
        return None
    path = Path(raw.value)
    if not path.is_dir():
        raise fail("state_dir", raw, "not a directory", "mount an emptyDir there or leave it unset")
    return path


def startup_hold(r: Lookup) -> tuple[bool, float, str | None]:
    """On when asked, or when a delay or ready URL is given (asking for a hold is the point)."""
    delay = seconds("startup_delay", r)
    ready = r("ready_url")
    ready_url = url("ready_url", ready) if ready else None
    raw = r("startup_hold")
    if raw is None:
        return delay > 0 or ready_url is not None, delay, ready_url
    value = raw.value.strip().lower()
    if value not in ("on", "off", "true", "false"):
        raise fail("startup_hold", raw, "not on or off", "use on or off")
    enabled = value in ("on", "true")
    if not enabled and (delay > 0 or ready_url is not None):
        raise fail(
            "startup_hold",
            raw,
            "off, yet --startup-delay or --ready-url is set",
            "drop them or use --startup-hold on",
        )
    return enabled, delay, ready_url


def startup_hold_of(
    flags: Mapping[str, object | None], environ: Mapping[str, str]
) -> tuple[bool, float, str | None]:
    """(hold on?, --startup-delay, --ready-url) as ``prestop serve`` would read them."""
    return startup_hold(lambda name: resolve(name, flags, environ))


def load_sidecar(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    config: Config,
    *,
    require_token: bool = True,
) -> SidecarSettings:
    """The settings only ``prestop serve`` needs; the token comes from env or a file."""
    r = lookup(flags, environ)
    listen = r("listen") or Resolved(text_default("listen"), "default")
    head, _, tail = listen.value.rpartition(":")
    host = head.strip("[]") or "0.0.0.0"
    if not valid_host(host):
        raise fail("listen", listen, "not host:port", "give e.g. " + text_default("listen"))
    listen_port = port("listen", Resolved(tail, listen.source), 0)
    token_file = r("token_file")
    if token_file is not None:
        token = read_secret_file(token_file, "token_file").strip()
    else:
        token = environ.get("PRESTOP_TOKEN", "").strip()
    if not token and require_token:
        raise ConfigError(
            "--token-file: no token; set PRESTOP_TOKEN or --token-file (kubelet sends it in "
            "httpHeaders) so that nobody else can stop the app"
        )
    health = r("health_url")
    register_secret(token)
    hold, delay, ready_url = startup_hold(r)
    return SidecarSettings(
        host=host,
        port=listen_port,
        token=token,
        health_url=url("health_url", health) if health else config.actuator_url + "/health",
        startup_hold=hold,
        startup_delay=delay,
        ready_url=ready_url,
        state_dir=load_state_dir(flags, environ),
        **generic_fields(SidecarSettings, ("sidecar", "state"), r),
    )
