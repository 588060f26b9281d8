"""The whole configuration: :class:`Config` and :func:`load`.

Fields named as options are filled from their declaration (:func:`generic_fields`); the few
``special`` ones are parsed here because they are derived (the actuator URL), cross-checked
(min <= max) or shorthand (the consumers' actuator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from agent.config.defaults import default_of, text_default
from agent.config.options import OPTIONS, OPTIONS_BY_NAME, OTHER_ENV
from agent.config.registry import EurekaSettings, NacosSettings, load_target
from agent.config.spec import RegistryKind
from agent.config.urls import CONTEXT_PATH, url
from agent.config.values import (
    Lookup,
    Resolved,
    fail,
    generic_fields,
    lookup,
    number,
    ordered_pair,
    port,
    read_secret_file,
    resolve_env_port,
    seconds,
)
from agent.consumers import ConsumerSettings
from agent.exceptions import ConfigError
from agent.logs import register_secret

ShutdownMode = Literal["actuator", "signal", "none"]
LogFormat = Literal["auto", "json", "console"]
LOG_LEVELS = OPTIONS_BY_NAME["log_level"].choices
SIGNALS = ("auto", "prometheus", "actuator", "kernel")


@dataclass(frozen=True)
class Config:
    """Fields named as options come from their declaration; none repeats a default here."""

    target: NacosSettings | EurekaSettings
    actuator_url: str
    metrics_url: str
    shutdown: ShutdownMode
    signal_target: str
    budget: float
    min_wait: float
    max_wait: float
    quiet_window: float | None  # None: adaptive, from the rate before the take-out
    confidence: float
    quiet_floor: float
    quiet_cap: float
    poll_interval: float
    shutdown_timeout: float
    http_timeout: float
    confirm_timeout: float
    signals: tuple[str, ...]
    requests_metric: str
    in_flight_metric: str
    consumers: ConsumerSettings | None  # None: consumers are not told
    grace: float | None  # the pod's terminationGracePeriodSeconds, for `prestop check`
    consumer_staleness: float  # how long consumers may still route to us after the take-out
    dry_run: bool
    log_to_pid1: bool
    log_format: LogFormat
    log_level: str
    # PRESTOP_* names set in the environment that no option reads (a typo: PRESTOP_BUGDET).
    unknown_env: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def registry(self) -> RegistryKind:
        return "eureka" if isinstance(self.target, EurekaSettings) else "nacos"

    @property
    def ip(self) -> str:
        return self.target.ip

    @property
    def port(self) -> int:
        return self.target.port

    @property
    def instance(self) -> str:
        return self.target.instance

    @property
    def service(self) -> str:
        return self.target.service

    def redacted(self) -> dict[str, Any]:
        """The effective configuration for the start-up log line, secrets masked."""
        out: dict[str, Any] = {"registry": self.registry}
        target = self.target
        for f in fields(target):
            value = getattr(target, f.name)
            if f.name == "password":
                value = "<provided-not-displayed>" if value else None
            elif f.name == "servers":
                # str() of a server never includes credentials.
                value = [str(s) for s in value]
            out[f.name] = value
        for f in fields(Config):
            if f.name in ("target", "sources"):
                continue
            out[f.name] = getattr(self, f.name)
        return out


def load(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> Config:
    """Resolve, parse and validate the whole configuration."""
    r = lookup(flags, environ)
    target = load_target(flags, environ)
    registry: RegistryKind = "eureka" if isinstance(target, EurekaSettings) else "nacos"
    actuator_url = _actuator_url(r, environ, target.port)
    metrics_r = r("metrics_url")
    metrics_url = url("metrics_url", metrics_r) if metrics_r else actuator_url + "/prometheus"
    plain = generic_fields(Config, ("registry", "drain", "check"), r, registry)
    ordered_pair("min_wait", plain["min_wait"], "max_wait", plain["max_wait"])
    ordered_pair("quiet_floor", plain["quiet_floor"], "quiet_cap", plain["quiet_cap"])
    known = {o.env for o in OPTIONS} | set(OTHER_ENV)
    unknown_env = tuple(sorted(n for n in environ if n.startswith("PRESTOP_") and n not in known))
    return Config(
        target=target,
        actuator_url=actuator_url,
        metrics_url=metrics_url,
        quiet_window=_quiet_window(r("quiet_window")),
        confidence=_confidence(r("confidence")),
        signals=_signals(r("signals")),
        consumers=_consumers(r),
        unknown_env=unknown_env,
        sources={o.name: res.source for o in OPTIONS if (res := r(o.name)) is not None},
        **plain,
    )


def _actuator_url(r: Lookup, environ: Mapping[str, str], app_port: int) -> str:
    """--actuator-url, else what Spring Boot's management settings in the app's env say."""
    actuator_r = r("actuator_url")
    if actuator_r is not None:
        return url("actuator_url", actuator_r, base=True)
    mgmt = resolve_env_port("MANAGEMENT_SERVER_PORT", environ) or app_port
    base_path = environ.get("MANAGEMENT_ENDPOINTS_WEB_BASE_PATH", "/actuator").strip() or "/"
    base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if base_path and not CONTEXT_PATH.fullmatch(base_path):
        raise ConfigError(
            f"MANAGEMENT_ENDPOINTS_WEB_BASE_PATH={base_path!r}: not a URL path; give e.g. "
            "/actuator, or set --actuator-url"
        )
    return f"http://127.0.0.1:{mgmt}{base_path}"


def check_drain_budget(cfg: Config) -> None:
    """Exit 2 when the budget cannot hold a take-out, the minimum drain and the shutdown.

    Otherwise the run would give up on the registry at once and stop an app that consumers
    still route to (``--budget 4``, or ``--shutdown-timeout 30`` under the default budget).
    """
    from agent.deadline import EXIT_MARGIN

    # One poll too: time sharing ends the registry steps min-wait + one poll before the drain.
    need = cfg.http_timeout + cfg.min_wait + cfg.poll_interval + cfg.shutdown_timeout + EXIT_MARGIN
    if cfg.budget < need:
        source = cfg.sources.get("budget", "default")
        shown = f"{cfg.budget:g}" + ("" if source.startswith("--") else f" from {source}")
        raise ConfigError(
            f"--budget {shown}: too short for a take-out, the minimum drain and the shutdown; "
            f"give at least {need:g} (--http-timeout {cfg.http_timeout:g} + --min-wait "
            f"{cfg.min_wait:g} + --poll-interval {cfg.poll_interval:g} + --shutdown-timeout "
            f"{cfg.shutdown_timeout:g} + {EXIT_MARGIN:g} to exit), or lower those"
        )


def _signals(r: Resolved | None) -> tuple[str, ...]:
    raw = r.value if r is not None else text_default("signals")
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in SIGNALS]
    if unknown or not names:
        raise fail(
            "signals", r, "unknown signal", "use auto, or a list of prometheus,actuator,kernel"
        )
    return names


def _consumers(r: Lookup) -> ConsumerSettings | None:
    """Where subscribers' actuators are: --consumer-actuator, or --consumer-port as shorthand."""
    actuator_r, port_r = r("consumer_actuator"), r("consumer_port")
    template: str | None = None
    if actuator_r is not None and actuator_r.value.lower() not in ("off", "none", "false", ""):
        template = _actuator_template(actuator_r)
    elif port_r is not None and port_r.value.lower() not in ("off", "none", "false", ""):
        where = "{port}" if port_r.value.lower() == "auto" else port("consumer_port", port_r, 0)
        template = f"http://{{ip}}:{where}/actuator"
    if template is None:
        return None
    auth: tuple[str, str] | None = None
    auth_r = r("consumer_auth_file")
    if auth_r is not None:
        user, sep, password = read_secret_file(auth_r, "consumer_auth_file").partition(":")
        if not sep or not user:
            raise fail(
                "consumer_auth_file", auth_r, "is not user:password", "write user:password in it"
            )
        register_secret(password)
        auth = (user, password)
    return ConsumerSettings(actuator=template, auth=auth, settle=seconds("consumer_settle", r))


def _actuator_template(r: Resolved) -> str:
    """A URL with {ip} (and maybe {port}) placeholders, checked with sample values."""
    if "{ip}" not in r.value:
        raise fail(
            "consumer_actuator", r, "has no {ip}", "give a template like http://{ip}:8081/actuator"
        )
    sample = r.value.replace("{ip}", "10.0.0.1").replace("{port}", "8080")
    if "{" in sample or "}" in sample:
        raise fail("consumer_actuator", r, "has an unknown placeholder", "use only {ip} and {port}")
    try:
        url("consumer_actuator", Resolved(sample, r.source))
    except ConfigError:
        raise fail(
            "consumer_actuator",
            r,
            "is not an http(s) URL template",
            "give one like http://{ip}:8081/actuator",
        ) from None
    return r.value.rstrip("/")


def _quiet_window(r: Resolved | None) -> float | None:
    if r is None or r.value.lower() == "auto":
        return None
    return number("quiet_window", r, 3.0)


def _confidence(r: Resolved | None) -> float:
    default = default_of("confidence")
    assert isinstance(default, float)
    value = number("confidence", r, default)
    if not 0 < value < 1:
        raise fail("confidence", r, "must be between 0 and 1", f"give e.g. {default:g} (0.1 %)")
    return value
