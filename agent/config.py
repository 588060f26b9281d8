"""Configuration: flags > ``PRESTOP_*`` env > the app's own env > defaults, checked before any I/O.

Every option is described once in ``OPTIONS``; :func:`load` resolves each value from the first
source that has it, remembers where it came from (so an error can say ``PRESTOP_PORT='abc'``),
parses it and returns a frozen :class:`Config`. A bad value raises :class:`ConfigError` with one
line naming the field and the fix. No network I/O here; the only file read is ``--password-file``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from agent.consumers import ConsumerSettings
from agent.exceptions import ConfigError
from agent.logs import register_secret

ShutdownMode = Literal["actuator", "signal", "none"]
RegistryKind = Literal["nacos", "eureka"]
LogFormat = Literal["auto", "json", "console"]

DEFAULT_NACOS_PORT = 8848
DEFAULT_CONTEXT_PATH = "/nacos"


@dataclass(frozen=True)
class Option:
    """One setting: its flag name and the env variables consulted after ``PRESTOP_<NAME>``."""

    name: str
    app_env: tuple[str, ...] = ()
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "PRESTOP_" + self.name.upper()


# The app's own variables are those a Spring Cloud Alibaba app already has in its pod spec
# (relaxed binding turns spring.cloud.nacos.discovery.server-addr into ..._SERVER_ADDR and
# ..._SERVERADDR alike), so the agent needs no second copy of them.
_D = "SPRING_CLOUD_NACOS_DISCOVERY_"
OPTIONS: tuple[Option, ...] = (
    Option(
        "nacos_addr",
        (
            "NACOS_SERVER_ADDR",
            _D + "SERVER_ADDR",
            _D + "SERVERADDR",
            "SPRING_CLOUD_NACOS_SERVER_ADDR",
            "SPRING_CLOUD_NACOS_SERVERADDR",
        ),
    ),
    Option("context_path", ("NACOS_CONTEXT_PATH",)),
    Option("registry"),
    # eureka.client.service-url.defaultZone, in both relaxed-binding spellings.
    Option(
        "eureka_url",
        ("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", "EUREKA_CLIENT_SERVICE_URL_DEFAULTZONE"),
        secret=True,  # may carry user:password@
    ),
    Option("instance_id", ("EUREKA_INSTANCE_INSTANCE_ID", "EUREKA_INSTANCE_INSTANCEID")),
    Option("namespace", (_D + "NAMESPACE", "NACOS_NAMESPACE")),
    Option("group", (_D + "GROUP", "NACOS_GROUP")),
    Option("cluster", (_D + "CLUSTER_NAME", _D + "CLUSTERNAME", _D + "CLUSTER")),
    Option("service", (_D + "SERVICE", "EUREKA_INSTANCE_APPNAME", "SPRING_APPLICATION_NAME")),
    Option("ip", (_D + "IP", "POD_IP", "podip")),
    Option("port", (_D + "PORT", "SERVER_PORT")),
    Option("username", ("NACOS_USERNAME", _D + "USERNAME", "SPRING_CLOUD_NACOS_USERNAME")),
    Option(
        "password",
        ("NACOS_PASSWORD", _D + "PASSWORD", "SPRING_CLOUD_NACOS_PASSWORD"),
        secret=True,
    ),
    Option("password_file"),
    Option("actuator_url"),
    Option("metrics_url"),
    Option("shutdown"),
    Option("signal_target"),
    Option("budget"),
    Option("min_wait"),
    Option("max_wait"),
    Option("quiet_window"),
    Option("confidence"),
    Option("quiet_floor"),
    Option("quiet_cap"),
    Option("poll_interval"),
    Option("shutdown_timeout"),
    Option("http_timeout"),
    Option("confirm_timeout"),
    Option("signals"),
    Option("requests_metric"),
    Option("in_flight_metric"),
    Option("consumer_port"),
    Option("consumer_actuator"),
    Option("consumer_auth_file"),
    Option("consumer_settle"),
    Option("listen"),
    Option("token_file"),
    Option("health_url"),
    Option("warmup"),
    Option("warmup_start_weight"),
    Option("warmup_curve"),
    Option("term_linger"),
    Option("startup_hold"),
    Option("startup_delay"),
    Option("ready_url"),
    Option("state_dir"),
    Option("dry_run"),
    Option("grace"),
    Option("consumer_staleness"),
    Option("log_to_pid1"),
    Option("log_format"),
    Option("log_level"),
)
# PRESTOP_* variables read outside the option table.
_OTHER_ENV = ("PRESTOP_TOKEN",)
LOG_LEVELS = ("debug", "info", "warning", "error")
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Resolved:
    """A raw value and where it came from, for error messages."""

    value: str
    source: str  # "--port", "PRESTOP_PORT", "SERVER_PORT" or "default"


def resolve(
    name: str, flags: Mapping[str, object | None], environ: Mapping[str, str]
) -> Resolved | None:
    """The raw value of one option from the first source that sets it (empty env is unset)."""
    opt = OPTIONS_BY_NAME[name]
    flag_value = flags.get(name)
    if flag_value is not None:
        if isinstance(flag_value, bool):
            return Resolved("true" if flag_value else "false", opt.flag)
        return Resolved(str(flag_value), opt.flag)
    for env in (opt.env, *opt.app_env):
        value = environ.get(env)
        if value is not None and value.strip() != "":
            return Resolved(value.strip(), env)
    return None


@dataclass(frozen=True)
class ServerAddress:
    """One Nacos server: ``base_url`` includes the scheme and the context path."""

    base_url: str

    def __str__(self) -> str:
        return self.base_url


@dataclass(frozen=True)
class EurekaServer:
    """One Eureka server: the service URL (``.../eureka/``) without userinfo, plus credentials."""

    base_url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.base_url


@dataclass(frozen=True)
class EurekaSettings:
    servers: tuple[EurekaServer, ...]
    app: str  # upper-cased, as Eureka stores it
    ip: str
    port: int
    instance_id: str | None = None  # None: found by ip and port
    app_name: str = ""  # original case, for Spring's default id hostname:name:port
    hostname: str | None = None

    @property
    def service(self) -> str:
        return self.app

    @property
    def instance(self) -> str:
        return self.instance_id or f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class NacosSettings:
    servers: tuple[ServerAddress, ...]
    namespace: str
    group: str
    cluster: str
    service: str
    ip: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def instance(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Config:
    nacos: NacosSettings | None
    actuator_url: str
    metrics_url: str
    shutdown: ShutdownMode = "actuator"
    signal_target: str = "1"
    budget: float = 25.0
    min_wait: float = 2.0
    max_wait: float = 60.0
    quiet_window: float | None = None  # None: adaptive, from the rate before the take-out
    confidence: float = 0.001
    quiet_floor: float = 0.3
    quiet_cap: float = 30.0
    poll_interval: float = 0.25
    shutdown_timeout: float = 5.0
    http_timeout: float = 3.0
    confirm_timeout: float = 10.0
    signals: tuple[str, ...] = ("auto",)
    requests_metric: str = "http_server_requests_seconds_count"
    in_flight_metric: str = "http_server_requests_active_seconds_active_count"
    consumers: ConsumerSettings | None = None  # None: consumers are not told
    grace: float | None = None  # the pod's terminationGracePeriodSeconds, for `prestop check`
    consumer_staleness: float | None = None  # None: the registry's typical worst case
    dry_run: bool = False
    log_to_pid1: bool = True
    log_format: LogFormat = "auto"
    log_level: str = "info"
    # PRESTOP_* names set in the environment that no option reads (a typo: PRESTOP_BUGDET).
    unknown_env: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    eureka: EurekaSettings | None = None
    registry: RegistryKind = "nacos"

    @property
    def target(self) -> NacosSettings | EurekaSettings:
        """The registry settings in use (exactly one of nacos and eureka is set)."""
        settings = self.eureka if self.registry == "eureka" else self.nacos
        assert settings is not None
        return settings

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
            if f.name in ("nacos", "eureka", "sources", "registry"):
                continue
            out[f.name] = getattr(self, f.name)
        return out


# --- parsing helpers: each raises ConfigError naming the option, the source and the fix ---


def _fail(opt: str, r: Resolved | None, problem: str, fix: str) -> ConfigError:
    flag = OPTIONS_BY_NAME[opt].flag if opt in OPTIONS_BY_NAME else opt
    where = ""
    if r is not None and r.source != "default":
        shown = "<hidden>" if OPTIONS_BY_NAME.get(opt, Option(opt)).secret else repr(r.value)
        where = f" {shown} from {r.source}" if not r.source.startswith("--") else f" {shown}"
    return ConfigError(f"{flag}{where}: {problem}; {fix}")


def _env_hint(opt: str) -> str:
    o = OPTIONS_BY_NAME[opt]
    return f"set {o.flag} or {o.env}"


def _number(
    opt: str, r: Resolved | None, default: float, *, minimum: float = 0.0, allow_zero: bool = True
) -> float:
    if r is None:
        return default
    try:
        value = float(r.value)
    except ValueError:
        raise _fail(opt, r, "not a number", f"give seconds as a number, e.g. {default:g}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _fail(opt, r, "not a finite number", f"give seconds as a number, e.g. {default:g}")
    if value < minimum or (not allow_zero and value == 0):
        bound = f"greater than {minimum:g}" if not allow_zero else f"at least {minimum:g}"
        raise _fail(opt, r, f"must be {bound}", f"give seconds, e.g. {default:g}")
    return value


def _bool(opt: str, r: Resolved | None, default: bool) -> bool:
    if r is None:
        return default
    v = r.value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise _fail(opt, r, "not a boolean", "use true or false")


# ASCII digits only: int() also takes "+80", " 80" and full-width digits, which no server does.
_DIGITS = re.compile(r"[0-9]{1,5}")
# A host name as DNS and Kubernetes write it; IP literals are checked with ipaddress.
_HOSTNAME = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?"
)
_CONTEXT_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+/?")
# A URL path: no empty segments ("//"), no spaces; percent-escapes and sub-delimiters allowed.
_URL_PATH = re.compile(r"(/[A-Za-z0-9._~%!$&'()*+,;=:-]+)*/?")
_SCHEME_TYPO = re.compile(r"(?i)(https?)[:/]+([^:/].*)")


def _scheme_typo(text: str) -> str | None:
    """What ``http//host``, ``http:/host`` or ``http:///host`` meant, or None."""
    m = _SCHEME_TYPO.fullmatch(text)
    if m is None or re.match(r"(?i)https?://[^/]", text) or "@" in text:
        return None
    return f"{m[1].lower()}://{m[2]}"


def _port(opt: str, r: Resolved | None, default: int) -> int:
    if r is None:
        return default
    if not _DIGITS.fullmatch(r.value):
        raise _fail(opt, r, "not a port number", "give an integer from 1 to 65535")
    value = int(r.value)
    if not 1 <= value <= 65535:
        raise _fail(opt, r, "out of range", "give an integer from 1 to 65535")
    return value


def _url(opt: str, r: Resolved, *, base: bool = False) -> str:
    """An http(s) URL of the app; ``base``: paths are appended to it, so no ``?query``."""
    example = {
        "metrics_url": "http://127.0.0.1:8081/actuator/prometheus",
        "health_url": "http://127.0.0.1:8081/actuator/health",
    }.get(opt, "http://127.0.0.1:8081/actuator")
    if "@" in r.value:
        # The value would show up in log lines and errors; the app is reached over loopback.
        raise _fail(
            opt,
            Resolved("<hidden>", r.source),
            "must not contain credentials",
            "leave user:password@ out and let 127.0.0.1 reach the actuator without a login",
        )
    parts = urlsplit(r.value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not valid_host(parts.hostname)
        or any(c.isspace() for c in r.value)
    ):
        meant = _scheme_typo(r.value)
        raise _fail(
            opt, r, "not an http(s) URL", f"write {meant}" if meant else f"give e.g. {example}"
        )
    written = _explicit_port(parts.netloc)
    if written is not None and (not _DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535):
        raise _fail(opt, r, "has an invalid port", "give a port from 1 to 65535")
    if not _URL_PATH.fullmatch(parts.path):
        raise _fail(opt, r, "has an invalid path (an empty // segment?)", f"give e.g. {example}")
    if "#" in r.value or (base and "?" in r.value):
        raise _fail(
            opt, r, "has a #fragment" if "#" in r.value else "has a ?query", f"give e.g. {example}"
        )
    return r.value.rstrip("/")


def valid_host(host: str) -> bool:
    """An IP literal or a DNS name: no spaces, no non-ASCII (IDNA would fail later, mid-drain)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # Digits and dots only: a mistyped IP address (999.1.1.1, 10.0.1), never a DNS name.
        return bool(_HOSTNAME.fullmatch(host)) and not re.fullmatch(r"[0-9.]+", host)
    return True


def _explicit_port(netloc: str) -> str | None:
    """The port as written after the host, or None when there is none."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        _, _, rest = hostport.partition("]")
        return rest[1:] if rest.startswith(":") else None
    return hostport.rpartition(":")[2] if ":" in hostport else None


def parse_servers(raw: Resolved, context_path: str) -> tuple[ServerAddress, ...]:
    """``host:port[,host:port...]`` with an optional scheme and context path per entry."""
    servers: list[ServerAddress] = []
    for item in raw.value.split(","):
        item = item.strip()
        if not item:
            continue
        text = item if "://" in item else "http://" + item
        parts = urlsplit(text)
        meant = _scheme_typo(item)
        not_host_port = _fail(
            "nacos_addr",
            raw,
            f"{item!r} is not host:port",
            f"write {meant}" if meant else "give e.g. nacos.infra:8848",
        )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise not_host_port
        if not valid_host(parts.hostname) or (
            parts.path.strip("/") and not _CONTEXT_PATH.fullmatch(parts.path)
        ):
            # "http//nacos:8848" (a typo) would otherwise be host "http", path "//nacos:8848".
            raise not_host_port
        if "?" in item or "#" in item:
            raise _fail(
                "nacos_addr",
                raw,
                f"{item!r} has a ?query or #fragment",
                "give host:port[/context-path], e.g. nacos.infra:8848",
            )
        written = _explicit_port(parts.netloc)
        if written is not None and (
            not _DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535
        ):
            raise _fail(
                "nacos_addr",
                raw,
                f"{item!r} has an invalid port",
                f"write {meant}" if meant else "give a port from 1 to 65535",
            )
        if parts.username or parts.password:
            # Credentials in a URL end up in logs and process lists; we take them separately.
            raise _fail(
                "nacos_addr",
                Resolved("<hidden>", raw.source),
                "must not contain credentials",
                "use --username and --password-file",
            )
        try:
            port = parts.port or DEFAULT_NACOS_PORT
        except ValueError:
            raise _fail(
                "nacos_addr",
                raw,
                f"{item!r} has an invalid port",
                f"write {meant}" if meant else "give a port from 1 to 65535",
            ) from None
        path = parts.path.rstrip("/") or context_path
        host = parts.hostname
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        servers.append(ServerAddress(f"{parts.scheme}://{host}:{port}{path}"))
    if not servers:
        raise _fail("nacos_addr", raw, "is empty", "give host:port, e.g. nacos.infra:8848")
    return tuple(servers)


def _detect_ip() -> str | None:
    """The pod IP from /etc/hosts (kubelet maps the pod's hostname to it), never a loopback."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return None if ipaddress.ip_address(ip).is_loopback else ip


def _read_password_file(r: Resolved, opt: str = "password_file") -> str:
    try:
        text = Path(r.value).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise _fail(
            opt, r, f"cannot be read ({reason})", "mount the Secret file readable"
        ) from None
    # Secret volumes often carry a trailing newline that is not part of the password.
    secret = text.rstrip("\r\n")
    if not secret.strip():
        raise _fail(opt, r, "is empty", "put the secret in the file (check the Secret's key)")
    return secret


def _password(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> str | None:
    """An explicit password beats a file at the same level; flags beat PRESTOP_* beat app env."""
    pw, pf = OPTIONS_BY_NAME["password"], OPTIONS_BY_NAME["password_file"]
    if flags.get("password") is not None and flags.get("password_file") is not None:
        raise ConfigError("--password and --password-file: give only one; prefer --password-file")
    if flags.get("password") is not None:
        return str(flags["password"])
    if flags.get("password_file") is not None:
        return _read_password_file(Resolved(str(flags["password_file"]), pf.flag))
    if environ.get(pw.env):
        return environ[pw.env]
    if environ.get(pf.env):
        return _read_password_file(Resolved(environ[pf.env], pf.env))
    for env in pw.app_env:
        if environ.get(env):
            return environ[env]
    return None


def load_nacos(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> NacosSettings:
    """The registry part of the configuration (used by drain, up, status and serve)."""

    def r(name: str) -> Resolved | None:
        return resolve(name, flags, environ)

    addr = r("nacos_addr")
    if addr is None:
        raise ConfigError(
            "--nacos-addr: not set; set --nacos-addr, PRESTOP_NACOS_ADDR or NACOS_SERVER_ADDR "
            "(host:port[,host:port]), or for Eureka --eureka-url"
        )
    ctx_r = r("context_path")
    if (
        ctx_r is not None
        and ctx_r.value.strip("/")
        and not _CONTEXT_PATH.fullmatch("/" + ctx_r.value.strip("/"))
    ):
        raise _fail("context_path", ctx_r, "is not a URL path", "give e.g. /nacos")
    context_path = "/" + ctx_r.value.strip("/") if ctx_r else DEFAULT_CONTEXT_PATH
    if context_path == "/":
        context_path = ""
    servers = parse_servers(addr, context_path)

    service_r = r("service")
    if service_r is None:
        raise ConfigError(
            "--service: not set; set --service, PRESTOP_SERVICE or SPRING_APPLICATION_NAME"
        )
    service, group_from_name = service_r.value, None
    if "@@" in service:
        group_from_name, service = service.split("@@", 1)
    if not service or any(c.isspace() for c in service):
        raise _fail("service", service_r, "is not a valid service name", _env_hint("service"))
    group_r = r("group")
    group = group_r.value if group_r else (group_from_name or "DEFAULT_GROUP")

    ip = _ip(r("ip"))

    namespace_r = r("namespace")
    cluster_r = r("cluster")
    user_r = r("username")
    password = _password(flags, environ)
    register_secret(password, unless=user_r.value if user_r is not None else None)
    if password is not None and user_r is None:
        raise ConfigError("--username: not set but a password is; set --username or NACOS_USERNAME")
    if user_r is not None and password is None:
        raise ConfigError(
            "--password: not set but a username is; set --password-file or NACOS_PASSWORD"
        )
    return NacosSettings(
        servers=servers,
        namespace=namespace_r.value if namespace_r else "public",
        group=group,
        cluster=cluster_r.value if cluster_r else "DEFAULT",
        service=service,
        ip=ip,
        port=_port("port", r("port"), 8080),
        username=user_r.value if user_r else None,
        password=password,
    )


def _registry_kind(r: Callable[[str], Resolved | None]) -> RegistryKind:
    """--registry, else whichever registry is configured."""
    kind = r("registry")
    if kind is not None:
        if kind.value not in ("nacos", "eureka"):
            raise _fail("registry", kind, "unknown registry", "use nacos or eureka")
        return kind.value  # type: ignore[return-value]
    has_nacos, has_eureka = r("nacos_addr") is not None, r("eureka_url") is not None
    if has_nacos and has_eureka:
        raise ConfigError(
            "--registry: both Nacos and Eureka are configured; set --registry nacos or eureka"
        )
    return "eureka" if has_eureka else "nacos"


def _split_userinfo(url: str) -> tuple[str | None, str | None, str]:
    """``user:password@`` taken off a URL before it is parsed.

    People paste passwords with ``@``, ``#``, ``/`` or ``?`` unencoded; a URL parser would then
    read part of the password as the host, path or fragment (and show it in an error). Host and
    path have no ``@``, so the last one ends the user info. Percent-encoding is undone.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return None, None, url
    user, colon, password = rest[:at].partition(":")
    return (
        unquote(user) or None,
        unquote(password) if colon else None,
        f"{scheme}://{rest[at + 1 :]}",
    )


def parse_eureka_urls(raw: Resolved) -> tuple[EurekaServer, ...]:
    """Comma-separated service URLs; ``user:password@`` moves out of the URL (never logged)."""
    hidden = Resolved("<hidden>", raw.source)  # the value may carry a password
    servers: list[EurekaServer] = []
    for item in raw.value.split(","):
        item = item.strip()
        if not item:
            continue
        user, password, item = _split_userinfo(item)
        parts = urlsplit(item)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or not valid_host(parts.hostname)
            or " " in item
        ):
            meant = _scheme_typo(item)  # None when the entry has user info
            raise _fail(
                "eureka_url",
                hidden,
                "an entry is not an http(s) URL",
                f"write {meant}" if meant else "give e.g. http://eureka:8761/eureka/",
            )
        if "?" in item or "#" in item or not _URL_PATH.fullmatch(parts.path):
            raise _fail(
                "eureka_url",
                hidden,
                f"the entry for {parts.hostname} has a ?query, #fragment or empty // segment",
                "give the service URL alone, e.g. http://eureka:8761/eureka/",
            )
        written = _explicit_port(parts.netloc)
        if written is not None and (
            not _DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535
        ):
            raise _fail(
                "eureka_url", hidden, "an entry has an invalid port", "give a port from 1 to 65535"
            )
        port = int(written) if written is not None else None
        if not parts.path.strip("/"):
            raise _fail(
                "eureka_url",
                hidden,
                f"{parts.hostname} has no path",
                "give the whole service URL, e.g. http://eureka:8761/eureka/",
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if port is None else f"{host}:{port}"
        base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}/"
        servers.append(EurekaServer(base, user, password))
    if not servers:
        raise _fail("eureka_url", hidden, "is empty", "give e.g. http://eureka:8761/eureka/")
    return tuple(servers)


def load_eureka(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> EurekaSettings:
    """The Eureka part of the configuration."""

    def r(name: str) -> Resolved | None:
        return resolve(name, flags, environ)

    url = r("eureka_url")
    if url is None:
        raise ConfigError(
            "--eureka-url: not set; set --eureka-url, PRESTOP_EUREKA_URL or "
            "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE (http://host:8761/eureka/[,...])"
        )
    servers = parse_eureka_urls(url)
    for server in servers:
        register_secret(server.password, unless=server.username)
    service_r = r("service")
    if service_r is None:
        raise ConfigError(
            "--service: not set; set --service, EUREKA_INSTANCE_APPNAME or SPRING_APPLICATION_NAME"
        )
    name = service_r.value
    if not name or any(c.isspace() or c == "/" for c in name):
        raise _fail("service", service_r, "is not a valid app name", _env_hint("service"))
    id_r = r("instance_id")
    if id_r is not None and ("/" in id_r.value or not id_r.value.strip()):
        raise _fail("instance_id", id_r, "is not a valid instance id", "give e.g. host:orders:8080")
    return EurekaSettings(
        servers=servers,
        # Eureka upper-cases app names (NE v2.0.6 CORE/resources/ApplicationResource.java).
        app=name.upper(),
        ip=_ip(r("ip")),
        port=_port("port", r("port"), 8080),
        instance_id=id_r.value if id_r else None,
        app_name=name,
        hostname=environ.get("HOSTNAME") or None,
    )


def _ip(ip_r: Resolved | None) -> str:
    if ip_r is None:
        detected = _detect_ip()
        if detected is None:
            raise ConfigError(
                "--ip: not set and not detectable; set --ip or PRESTOP_IP, or pass POD_IP "
                "through the downward API (fieldRef: status.podIP)"
            )
        return detected
    try:
        ipaddress.ip_address(ip_r.value)
    except ValueError:
        raise _fail("ip", ip_r, "is not an IP address", "give the pod IP, e.g. 10.1.2.3") from None
    return ip_r.value


def load(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> Config:
    """Resolve, parse and validate the whole configuration."""

    def r(name: str) -> Resolved | None:
        return resolve(name, flags, environ)

    registry = _registry_kind(r)
    nacos = load_nacos(flags, environ) if registry == "nacos" else None
    eureka = load_eureka(flags, environ) if registry == "eureka" else None
    target: NacosSettings | EurekaSettings | None = nacos or eureka
    assert target is not None

    actuator_r = r("actuator_url")
    if actuator_r is not None:
        actuator_url = _url("actuator_url", actuator_r, base=True)
    else:
        mgmt = resolve_env_port("MANAGEMENT_SERVER_PORT", environ) or target.port
        base_path = environ.get("MANAGEMENT_ENDPOINTS_WEB_BASE_PATH", "/actuator").strip() or "/"
        base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        if base_path and not _CONTEXT_PATH.fullmatch(base_path):
            raise ConfigError(
                f"MANAGEMENT_ENDPOINTS_WEB_BASE_PATH={base_path!r}: not a URL path; give e.g. "
                "/actuator, or set --actuator-url"
            )
        actuator_url = f"http://127.0.0.1:{mgmt}{base_path}"
    metrics_r = r("metrics_url")
    metrics_url = (
        _url("metrics_url", metrics_r) if metrics_r is not None else actuator_url + "/prometheus"
    )

    shutdown_r = r("shutdown")
    shutdown: ShutdownMode = "actuator"
    if shutdown_r is not None:
        if shutdown_r.value not in ("actuator", "signal", "none"):
            raise _fail("shutdown", shutdown_r, "unknown mode", "use actuator, signal or none")
        shutdown = shutdown_r.value  # type: ignore[assignment]
    target_r = r("signal_target")
    signal_target = target_r.value if target_r else "1"

    budget = _number("budget", r("budget"), 25.0, allow_zero=False)
    # Eureka consumers lag by up to ~95 s (server cache tick + fetch + load-balancer cache),
    # plus one quiet window at 1 req/s (6.9 s): the cap. The server's apps/delta shows a change
    # only at its next 30 s cache tick: the confirmation's limit.
    eureka_defaults = registry == "eureka"
    min_wait, max_wait = _ordered_pair(
        "min_wait", 2.0, "max_wait", 105.0 if eureka_defaults else 60.0, r
    )
    quiet_floor, quiet_cap = _ordered_pair("quiet_floor", 0.3, "quiet_cap", 30.0, r)
    log_format_r = r("log_format")
    log_format: LogFormat = "auto"
    if log_format_r is not None:
        if log_format_r.value not in ("auto", "json", "console"):
            raise _fail("log_format", log_format_r, "unknown format", "use auto, json or console")
        log_format = log_format_r.value  # type: ignore[assignment]
    log_level_r = r("log_level")
    if log_level_r is not None and log_level_r.value.lower() not in LOG_LEVELS:
        raise _fail("log_level", log_level_r, "unknown level", "use " + ", ".join(LOG_LEVELS))
    known = {o.env for o in OPTIONS} | set(_OTHER_ENV)
    unknown_env = tuple(sorted(n for n in environ if n.startswith("PRESTOP_") and n not in known))

    sources = {o.name: res.source for o in OPTIONS if (res := r(o.name)) is not None}
    return Config(
        nacos=nacos,
        eureka=eureka,
        registry=registry,
        actuator_url=actuator_url,
        metrics_url=metrics_url,
        shutdown=shutdown,
        signal_target=signal_target,
        budget=budget,
        min_wait=min_wait,
        max_wait=max_wait,
        quiet_window=_quiet_window(r("quiet_window")),
        confidence=_confidence(r("confidence")),
        quiet_floor=quiet_floor,
        quiet_cap=quiet_cap,
        poll_interval=_number("poll_interval", r("poll_interval"), 0.25, minimum=0.01),
        shutdown_timeout=_number("shutdown_timeout", r("shutdown_timeout"), 5.0),
        http_timeout=_number("http_timeout", r("http_timeout"), 3.0, allow_zero=False),
        confirm_timeout=_number(
            "confirm_timeout", r("confirm_timeout"), 35.0 if eureka_defaults else 10.0
        ),
        signals=_signals(r("signals")),
        requests_metric=_metric("requests_metric", r("requests_metric"), Config.requests_metric),
        in_flight_metric=_metric(
            "in_flight_metric", r("in_flight_metric"), Config.in_flight_metric
        ),
        consumers=_consumers(r),
        dry_run=_bool("dry_run", r("dry_run"), False),
        grace=None if r("grace") is None else _number("grace", r("grace"), 30.0),
        consumer_staleness=None
        if r("consumer_staleness") is None
        else _number("consumer_staleness", r("consumer_staleness"), 35.5),
        log_to_pid1=_bool("log_to_pid1", r("log_to_pid1"), True),
        log_format=log_format,
        log_level=log_level_r.value.lower() if log_level_r is not None else "info",
        unknown_env=unknown_env,
        sources=sources,
    )


def check_drain_budget(cfg: Config) -> None:
    """Exit 2 when the budget cannot hold a take-out, the minimum drain and the shutdown.

    Otherwise the run would give up on the registry at once and stop an app that consumers
    still route to (``--budget 4``, or ``--shutdown-timeout 30`` under the default budget).
    """
    from agent.sequence import EXIT_MARGIN

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


SIGNALS = ("auto", "prometheus", "actuator", "kernel")


def _signals(r: Resolved | None) -> tuple[str, ...]:
    if r is None:
        return ("auto",)
    names = tuple(n.strip() for n in r.value.split(",") if n.strip())
    unknown = [n for n in names if n not in SIGNALS]
    if unknown or not names:
        raise _fail(
            "signals", r, "unknown signal", "use auto, or a list of prometheus,actuator,kernel"
        )
    return names


def _metric(opt: str, r: Resolved | None, default: str) -> str:
    if r is None:
        return default
    if not r.value.replace("_", "a").replace(":", "a").isalnum() or r.value[0].isdigit():
        raise _fail(opt, r, "is not a Prometheus metric name", "give e.g. " + default)
    return r.value


def _consumers(r: Callable[[str], Resolved | None]) -> ConsumerSettings | None:
    """Where subscribers' actuators are: --consumer-actuator, or --consumer-port as shorthand."""
    actuator_r, port_r = r("consumer_actuator"), r("consumer_port")
    template: str | None = None
    if actuator_r is not None and actuator_r.value.lower() not in ("off", "none", "false", ""):
        template = _actuator_template(actuator_r)
    elif port_r is not None and port_r.value.lower() not in ("off", "none", "false", ""):
        port = "{port}" if port_r.value.lower() == "auto" else _port("consumer_port", port_r, 0)
        template = f"http://{{ip}}:{port}/actuator"
    if template is None:
        return None
    auth: tuple[str, str] | None = None
    auth_r = r("consumer_auth_file")
    if auth_r is not None:
        user, sep, password = _read_password_file(auth_r, "consumer_auth_file").partition(":")
        if not sep or not user:
            raise _fail(
                "consumer_auth_file", auth_r, "is not user:password", "write user:password in it"
            )
        register_secret(password)
        auth = (user, password)
    settle = _number("consumer_settle", r("consumer_settle"), 0.2)
    return ConsumerSettings(actuator=template, auth=auth, settle=settle)


def _actuator_template(r: Resolved) -> str:
    """A URL with {ip} (and maybe {port}) placeholders, checked with sample values."""
    if "{ip}" not in r.value:
        raise _fail(
            "consumer_actuator",
            r,
            "has no {ip}",
            "give a template like http://{ip}:8081/actuator",
        )
    sample = r.value.replace("{ip}", "10.0.0.1").replace("{port}", "8080")
    if "{" in sample or "}" in sample:
        raise _fail(
            "consumer_actuator", r, "has an unknown placeholder", "use only {ip} and {port}"
        )
    try:
        _url("consumer_actuator", Resolved(sample, r.source))
    except ConfigError:
        raise _fail(
            "consumer_actuator",
            r,
            "is not an http(s) URL template",
            "give one like http://{ip}:8081/actuator",
        ) from None
    return r.value.rstrip("/")


def _ordered_pair(
    low: str,
    low_default: float,
    high: str,
    high_default: float,
    r: Callable[[str], Resolved | None],
) -> tuple[float, float]:
    """Two durations where the first must not exceed the second (e.g. min and max wait)."""
    a, b = _number(low, r(low), low_default), _number(high, r(high), high_default)
    if a > b:
        lf, hf = OPTIONS_BY_NAME[low].flag, OPTIONS_BY_NAME[high].flag
        raise ConfigError(f"{lf} {a:g} is greater than {hf} {b:g}; lower {lf} or raise {hf}")
    return a, b


def _quiet_window(r: Resolved | None) -> float | None:
    if r is None or r.value.lower() == "auto":
        return None
    return _number("quiet_window", r, 3.0)


def _confidence(r: Resolved | None) -> float:
    if r is None:
        return 0.001
    value = _number("confidence", r, 0.001)
    if not 0 < value < 1:
        raise _fail("confidence", r, "must be between 0 and 1", "give e.g. 0.001 (0.1 %)")
    return value


def resolve_env_port(name: str, environ: Mapping[str, str]) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    return _port_env(name, raw)


def _port_env(name: str, raw: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise ConfigError(f"{name}={raw!r}: not a port number; give an integer 1-65535")
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r}: out of range; give an integer 1-65535")
    return value


@dataclass(frozen=True)
class SidecarSettings:
    host: str
    port: int
    token: str = field(repr=False)
    health_url: str
    warmup: float
    warmup_start_weight: float
    warmup_curve: Literal["quadratic", "linear"]
    term_linger: float
    startup_hold: bool = False
    startup_delay: float = 0.0
    ready_url: str | None = None
    state_dir: Path | None = None


def load_state_dir(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> Path | None:
    """``--state-dir``: an existing directory (an emptyDir) for the hold record, or None."""
    raw = resolve("state_dir", flags, environ)
    if raw is None:
        return None
    path = Path(raw.value)
    if not path.is_dir():
        raise _fail(
            "state_dir", raw, "not a directory", "mount an emptyDir there or leave it unset"
        )
    return path


def _startup_hold(
    r: Callable[[str], Resolved | None],
) -> tuple[bool, float, str | None]:
    """On when asked, or when a delay or ready URL is given (asking for a hold is the point)."""
    delay = _number("startup_delay", r("startup_delay"), 0.0)
    ready = r("ready_url")
    ready_url = _url("ready_url", ready) if ready else None
    raw = r("startup_hold")
    if raw is None:
        return delay > 0 or ready_url is not None, delay, ready_url
    value = raw.value.strip().lower()
    if value not in ("on", "off", "true", "false"):
        raise _fail("startup_hold", raw, "not on or off", "use on or off")
    enabled = value in ("on", "true")
    if not enabled and (delay > 0 or ready_url is not None):
        raise _fail(
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
    return _startup_hold(lambda name: resolve(name, flags, environ))


def load_sidecar(
    flags: Mapping[str, object | None],
    environ: Mapping[str, str],
    config: Config,
    *,
    require_token: bool = True,
) -> SidecarSettings:
    """The settings only ``prestop serve`` needs; the token comes from env or a file."""

    def r(name: str) -> Resolved | None:
        return resolve(name, flags, environ)

    listen = r("listen")
    host, port = "0.0.0.0", 9901
    if listen is not None:
        head, _, tail = listen.value.rpartition(":")
        host = head.strip("[]") or "0.0.0.0"
        if not valid_host(host):
            raise _fail("listen", listen, "not host:port", "give e.g. 0.0.0.0:9901")
        port = _port("listen", Resolved(tail, listen.source), 9901)
    token_file = r("token_file")
    if token_file is not None:
        token = _read_password_file(token_file, "token_file").strip()
    else:
        token = environ.get("PRESTOP_TOKEN", "").strip()
    if not token and require_token:
        raise ConfigError(
            "--token-file: no token; set PRESTOP_TOKEN or --token-file (kubelet sends it in "
            "httpHeaders) so that nobody else can stop the app"
        )
    health = r("health_url")
    curve = r("warmup_curve")
    if curve is not None and curve.value not in ("quadratic", "linear"):
        raise _fail("warmup_curve", curve, "unknown curve", "use quadratic or linear")
    register_secret(token)
    hold, delay, ready_url = _startup_hold(r)
    return SidecarSettings(
        host=host,
        port=port,
        token=token,
        health_url=_url("health_url", health) if health else config.actuator_url + "/health",
        warmup=_number("warmup", r("warmup"), 0.0),
        warmup_start_weight=_number("warmup_start_weight", r("warmup_start_weight"), 0.1),
        warmup_curve=curve.value if curve else "quadratic",  # type: ignore[arg-type]
        term_linger=_number("term_linger", r("term_linger"), 2.0),
        startup_hold=hold,
        startup_delay=delay,
        ready_url=ready_url,
        state_dir=load_state_dir(flags, environ),
    )
