"""Addresses the user writes: registry servers, the app's URLs and host names.

Parsed strictly (ASCII host names or IP literals, ports of ASCII digits 1-65535, no ``?query``,
``#fragment`` or empty ``//`` path segment), so a typo such as ``http//nacos:8848`` is refused
with what was meant instead of failing mid-drain.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from agent.config.values import DIGITS, Resolved, fail

DEFAULT_NACOS_PORT = 8848
# A host name as DNS and Kubernetes write it; IP literals are checked with ipaddress.
HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?")
CONTEXT_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+/?")
# A URL path: no empty segments ("//"), no spaces; percent-escapes and sub-delimiters allowed.
URL_PATH = re.compile(r"(/[A-Za-z0-9._~%!$&'()*+,;=:-]+)*/?")
SCHEME_TYPO = re.compile(r"(?i)(https?)[:/]+([^:/].*)")


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


def scheme_typo(text: str) -> str | None:
    """What ``http//host``, ``http:/host`` or ``http:///host`` meant, or None."""
    m = SCHEME_TYPO.fullmatch(text)
    if m is None or re.match(r"(?i)https?://[^/]", text) or "@" in text:
        return None
    return f"{m[1].lower()}://{m[2]}"


def url(opt: str, r: Resolved, *, base: bool = False) -> str:
    """An http(s) URL of the app; ``base``: paths are appended to it, so no ``?query``."""
    example = {
        "metrics_url": "http://127.0.0.1:8081/actuator/prometheus",
        "health_url": "http://127.0.0.1:8081/actuator/health",
    }.get(opt, "http://127.0.0.1:8081/actuator")
    if "@" in r.value:
        # The value would show up in log lines and errors; the app is reached over loopback.
        raise fail(
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
        meant = scheme_typo(r.value)
        raise fail(
            opt, r, "not an http(s) URL", f"write {meant}" if meant else f"give e.g. {example}"
        )
    written = explicit_port(parts.netloc)
    if written is not None and (not DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535):
        raise fail(opt, r, "has an invalid port", "give a port from 1 to 65535")
    if not URL_PATH.fullmatch(parts.path):
        raise fail(opt, r, "has an invalid path (an empty // segment?)", f"give e.g. {example}")
    if "#" in r.value or (base and "?" in r.value):
        raise fail(
            opt, r, "has a #fragment" if "#" in r.value else "has a ?query", f"give e.g. {example}"
        )
    return r.value.rstrip("/")


def valid_host(host: str) -> bool:
    """An IP literal or a DNS name: no spaces, no non-ASCII (IDNA would fail later, mid-drain)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # Digits and dots only: a mistyped IP address (999.1.1.1, 10.0.1), never a DNS name.
        return bool(HOSTNAME.fullmatch(host)) and not re.fullmatch(r"[0-9.]+", host)
    return True


def explicit_port(netloc: str) -> str | None:
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
        meant = scheme_typo(item)
        not_host_port = fail(
            "nacos_addr",
            raw,
            f"{item!r} is not host:port",
            f"write {meant}" if meant else "give e.g. nacos.infra:8848",
        )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise not_host_port
        if not valid_host(parts.hostname) or (
            parts.path.strip("/") and not CONTEXT_PATH.fullmatch(parts.path)
        ):
            # "http//nacos:8848" (a typo) would otherwise be host "http", path "//nacos:8848".
            raise not_host_port
        if "?" in item or "#" in item:
            raise fail(
                "nacos_addr",
                raw,
                f"{item!r} has a ?query or #fragment",
                "give host:port[/context-path], e.g. nacos.infra:8848",
            )
        written = explicit_port(parts.netloc)
        if written is not None and (
            not DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535
        ):
            raise fail(
                "nacos_addr",
                raw,
                f"{item!r} has an invalid port",
                f"write {meant}" if meant else "give a port from 1 to 65535",
            )
        if parts.username or parts.password:
            # Credentials in a URL end up in logs and process lists; we take them separately.
            raise fail(
                "nacos_addr",
                Resolved("<hidden>", raw.source),
                "must not contain credentials",
                "use --username and --password-file",
            )
        try:
            port = parts.port or DEFAULT_NACOS_PORT
        except ValueError:
            raise fail(
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
        raise fail("nacos_addr", raw, "is empty", "give host:port, e.g. nacos.infra:8848")
    return tuple(servers)


def split_userinfo(url: str) -> tuple[str | None, str | None, str]:
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
        user, password, item = split_userinfo(item)
        parts = urlsplit(item)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or not valid_host(parts.hostname)
            or " " in item
        ):
            meant = scheme_typo(item)  # None when the entry has user info
            raise fail(
                "eureka_url",
                hidden,
                "an entry is not an http(s) URL",
                f"write {meant}" if meant else "give e.g. http://eureka:8761/eureka/",
            )
        if "?" in item or "#" in item or not URL_PATH.fullmatch(parts.path):
            raise fail(
                "eureka_url",
                hidden,
                f"the entry for {parts.hostname} has a ?query, #fragment or empty // segment",
                "give the service URL alone, e.g. http://eureka:8761/eureka/",
            )
        written = explicit_port(parts.netloc)
        if written is not None and (
            not DIGITS.fullmatch(written) or not 1 <= int(written) <= 65535
        ):
            raise fail(
                "eureka_url", hidden, "an entry has an invalid port", "give a port from 1 to 65535"
            )
        port = int(written) if written is not None else None
        if not parts.path.strip("/"):
            raise fail(
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
        raise fail("eureka_url", hidden, "is empty", "give e.g. http://eureka:8761/eureka/")
    return tuple(servers)
