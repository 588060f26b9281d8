"""The registry settings: which registry, its servers and credentials, and our instance."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.defaults import default_of, text_default
from agent.config.options import OPTIONS_BY_NAME
from agent.config.spec import RegistryKind
from agent.config.urls import (
    CONTEXT_PATH,
    EurekaServer,
    ServerAddress,
    parse_eureka_urls,
    parse_servers,
)
from agent.config.values import (
    Lookup,
    Resolved,
    choice,
    env_hint,
    fail,
    port,
    read_secret_file,
    resolve,
)
from agent.exceptions import ConfigError
from agent.logs import register_secret

DEFAULT_CONTEXT_PATH = text_default("context_path")


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


def detect_ip() -> str | None:
    """The pod IP from /etc/hosts (kubelet maps the pod's hostname to it), never a loopback."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    return None if ipaddress.ip_address(ip).is_loopback else ip


def password_of(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> str | None:
    """An explicit password beats a file at the same level; flags beat PRESTOP_* beat app env."""
    pw, pf = OPTIONS_BY_NAME["password"], OPTIONS_BY_NAME["password_file"]
    if flags.get("password") is not None and flags.get("password_file") is not None:
        raise ConfigError("--password and --password-file: give only one; prefer --password-file")
    if flags.get("password") is not None:
        return str(flags["password"])
    if flags.get("password_file") is not None:
        return read_secret_file(Resolved(str(flags["password_file"]), pf.flag))
    if environ.get(pw.env):
        return environ[pw.env]
    if environ.get(pf.env):
        return read_secret_file(Resolved(environ[pf.env], pf.env))
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
        and not CONTEXT_PATH.fullmatch("/" + ctx_r.value.strip("/"))
    ):
        raise fail("context_path", ctx_r, "is not a URL path", "give e.g. /nacos")
    context_path = "/" + (ctx_r.value if ctx_r else DEFAULT_CONTEXT_PATH).strip("/")
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
        raise fail("service", service_r, "is not a valid service name", env_hint("service"))
    group_r = r("group")
    group = group_r.value if group_r else (group_from_name or text_default("group"))

    ip = ip_of(r("ip"))

    namespace_r = r("namespace")
    cluster_r = r("cluster")
    user_r = r("username")
    password = password_of(flags, environ)
    register_secret(password, unless=user_r.value if user_r is not None else None)
    if password is not None and user_r is None:
        raise ConfigError("--username: not set but a password is; set --username or NACOS_USERNAME")
    if user_r is not None and password is None:
        raise ConfigError(
            "--password: not set but a username is; set --password-file or NACOS_PASSWORD"
        )
    return NacosSettings(
        servers=servers,
        namespace=namespace_r.value if namespace_r else text_default("namespace"),
        group=group,
        cluster=cluster_r.value if cluster_r else text_default("cluster"),
        service=service,
        ip=ip,
        port=_port(r),
        username=user_r.value if user_r else None,
        password=password,
    )


def registry_kind(r: Lookup) -> RegistryKind:
    """--registry, else whichever registry is configured."""
    kind = r("registry")
    if kind is not None:
        return "eureka" if choice(OPTIONS_BY_NAME["registry"], kind) == "eureka" else "nacos"
    has_nacos, has_eureka = r("nacos_addr") is not None, r("eureka_url") is not None
    if has_nacos and has_eureka:
        raise ConfigError(
            "--registry: both Nacos and Eureka are configured; set --registry nacos or eureka"
        )
    return "eureka" if has_eureka else "nacos"


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
        raise fail("service", service_r, "is not a valid app name", env_hint("service"))
    id_r = r("instance_id")
    if id_r is not None and ("/" in id_r.value or not id_r.value.strip()):
        raise fail("instance_id", id_r, "is not a valid instance id", "give e.g. host:orders:8080")
    return EurekaSettings(
        servers=servers,
        # Eureka upper-cases app names (NE v2.0.6 CORE/resources/ApplicationResource.java).
        app=name.upper(),
        ip=ip_of(r("ip")),
        port=_port(r),
        instance_id=id_r.value if id_r else None,
        app_name=name,
        hostname=environ.get("HOSTNAME") or None,
    )


def ip_of(ip_r: Resolved | None) -> str:
    if ip_r is None:
        detected = detect_ip()
        if detected is None:
            raise ConfigError(
                "--ip: not set and not detectable; set --ip or PRESTOP_IP, or pass POD_IP "
                "through the downward API (fieldRef: status.podIP)"
            )
        return detected
    try:
        ipaddress.ip_address(ip_r.value)
    except ValueError:
        raise fail("ip", ip_r, "is not an IP address", "give the pod IP, e.g. 10.1.2.3") from None
    return ip_r.value


def _port(r: Lookup) -> int:
    default = default_of("port")
    assert isinstance(default, int)
    return port("port", r("port"), default)


def load_target(
    flags: Mapping[str, object | None], environ: Mapping[str, str]
) -> NacosSettings | EurekaSettings:
    """The settings of the registry in use: --registry, else whichever is configured."""
    kind = registry_kind(lambda name: resolve(name, flags, environ))
    return load_eureka(flags, environ) if kind == "eureka" else load_nacos(flags, environ)
