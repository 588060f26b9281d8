"""A service consumer for the lab: discovers instances from Nacos and round-robins requests.

Its view of the instance list is as stale as a real client's: it polls the list every
``refresh_interval`` seconds (or long-polls the emulator's push stand-in), and optionally keeps
a load-balancer cache on top that is refreshed only every ``lb_cache_ttl`` seconds (Spring Cloud
LoadBalancer's ``CachingServiceInstanceListSupplier``, 35 s by default). Requests are open-loop
at ``rate`` per second, never retried, and every outcome is recorded.

The load-balancer cache behaves as Spring's: a request finding no entry (none yet, expired, or
evicted) loads the discovery view into it, and that entry is what requests route by until it
expires ``lb_cache_ttl`` later; without an entry the routing list is the discovery view itself.
With ``management=True`` the consumer serves, on a port of its own, what a Spring Boot consumer
exposes on its management port: ``/actuator/nacosdiscovery`` (Spring Cloud Alibaba, the Nacos
client's hosts) and ``/actuator/caches`` with Spring Boot's semantics (status codes, JSON shape,
content type); evicting ``CachingServiceInstanceListSupplierCache`` drops the entry. A consumer
can also play an app that exposes none of this (``expose_endpoints=False``: 404 on everything
under ``/actuator``) or one behind HTTP Basic auth (``management_auth``).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import itertools
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

MAX_RECORDS = 500_000

# Spring Cloud LoadBalancer's instance-list cache and the cache manager holding it (with Caffeine
# on the class path, as in the lab's real consumer, lab/java/APPS.md).
LB_CACHE = "CachingServiceInstanceListSupplierCache"
LB_CACHE_MANAGER = "caffeineLoadBalancerCacheManager"
CAFFEINE_TARGET = "com.github.benmanes.caffeine.cache.BoundedLocalCache$BoundedLocalManualCache"
# What Spring Boot 3 answers an actuator read with when the client accepts anything.
ACTUATOR_JSON = "application/vnd.spring-boot.actuator.v3+json"


@dataclass
class ConsumerConfig:
    nacos_url: str
    service: str
    namespace: str = "public"
    group: str = "DEFAULT_GROUP"
    api: Literal["v1", "v3"] = "v1"
    discovery: Literal["poll", "watch"] = "poll"
    refresh_interval: float = 1.0
    lb_cache_ttl: float = 0.0
    rate: float = 20.0
    path: str = "/work"
    request_timeout: float = 30.0
    max_concurrency: int = 64
    duration: float | None = 600.0  # hard bound: the consumer always stops by itself
    max_requests: int = 1_000_000
    name: str = "consumer"
    username: str | None = None
    password: str | None = None
    # Serve /actuator/nacosdiscovery (Spring Cloud Alibaba's view of the Nacos client's cache)
    # and /actuator/caches on a port of its own, and announce it to the registry as a subscriber.
    management: bool = False
    # False: the management port answers 404 on everything under /actuator, as an app that
    # does not expose these endpoints.
    expose_endpoints: bool = True
    # (user, password): HTTP Basic auth on the management port (401 without or with wrong ones).
    management_auth: tuple[str, str] | None = None
    # Cache managers and their caches, as /actuator/caches lists them.
    cache_managers: dict[str, list[str]] = field(
        default_factory=lambda: {LB_CACHE_MANAGER: [LB_CACHE]}
    )
    # Eureka instead of Nacos: a DiscoveryClient fetching every refresh_interval.
    registry: Literal["nacos", "eureka"] = "nacos"
    eureka_url: str = ""


@dataclass(frozen=True)
class Record:
    start: float  # time.monotonic()
    end: float
    instance: str
    outcome: str  # "ok" or an error kind


def classify(exc: BaseException) -> str:
    """An httpx error as one of the lab's error kinds."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__context__ or exc.__cause__
        text = str(exc).lower()
        if isinstance(cause, ConnectionRefusedError) or "refused" in text:
            return "connect_refused"
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "remote_closed"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection_reset"
    return "other"


class Consumer:
    def __init__(self, config: ConsumerConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._discovered: list[str] = []
        self._routed: list[str] = []
        # When the load-balancer cache entry was loaded; None: no entry (none yet, expired or
        # evicted), so the routing list is the discovery view.
        self._lb_entry_at: float | None = None
        # Instances that left the routing list -> when (time.monotonic()).
        self._left_routing: dict[str, float] = {}
        self.evictions: list[float] = []
        self._stopped_at: float | None = None  # a stopped consumer routes nothing any more
        self._rr = itertools.count()
        self._records: list[Record] = []
        self.discovery_errors = 0
        self.list_changes: list[tuple[float, list[str]]] = []
        self._http = httpx.Client(
            timeout=config.request_timeout,
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
                keepalive_expiry=5.0,  # shorter than servers' idle timeout, as pools are set up
            ),
            trust_env=False,
        )
        self._registry_http = httpx.Client(timeout=35.0, trust_env=False)
        self._pool = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix=config.name)
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._token: str | None = None
        self._management: ThreadingHTTPServer | None = None
        self._fetcher: Any = None  # EurekaFetcher when registry == "eureka"
        self.management_port = 0

    # --- lifecycle ---

    def launch(self) -> Consumer:
        """Discover (and serve the management endpoints) without sending any load yet, so the
        routing list can be watched before ``start()``; idempotent."""
        if self._threads:
            return self
        if self.config.management:
            self._start_management()
        if self.config.registry == "eureka":
            from prestop_lab.eureka_client import EurekaFetcher

            self._fetcher = EurekaFetcher(self.config.eureka_url, self.config.service)
            self._fetch_once()
        else:
            self._refresh_once()
        discover = threading.Thread(target=self._discover, daemon=True)
        self._threads = [discover]
        discover.start()
        return self

    def start(self) -> None:
        """Send the load (launching first if ``launch()`` was not called)."""
        self.launch()
        self._started = time.monotonic()
        schedule = threading.Thread(target=self._schedule, daemon=True)
        self._threads.append(schedule)
        schedule.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped_at = time.monotonic()
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self._management is not None:
            self._management.shutdown()
            self._management.server_close()
        self._http.close()
        self._registry_http.close()
        if self._fetcher is not None:
            self._fetcher.close()

    def __enter__(self) -> Consumer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- discovery ---

    def _start_management(self) -> None:
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                self._answer("GET")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

            def _answer(self, method: str) -> None:
                accept = self.headers.get("Accept", "")
                status, body, headers = consumer.management_answer(
                    method, self.path, self.headers.get("Authorization"), accept
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._management = server
        self.management_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def management_answer(
        self, method: str, target: str, authorization: str | None, accept: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for a request to the management port, as Spring Boot answers.

        ``GET /actuator/caches``; ``GET /actuator/caches/{cache}[?cacheManager=]`` 200, 404
        (unknown cache or manager) or 400 (the name is in several managers and none was
        given); ``DELETE /actuator/caches/{cache}[?cacheManager=]`` 204 / 404 / 400;
        ``DELETE /actuator/caches`` 204, every cache cleared; ``GET /actuator/nacosdiscovery``.
        Bodies of 204, 400 and the endpoint's own 404 are empty, as Boot's.
        """
        url = urlsplit(target)
        path = url.path
        query = dict(parse_qsl(url.query))
        auth = self.config.management_auth
        if auth is not None and not _basic_ok(authorization, auth):
            return _spring_error(401, path, {"WWW-Authenticate": 'Basic realm="Realm"'})
        if not self.config.expose_endpoints or not path.startswith("/actuator"):
            return _spring_error(404, path)
        json_type = "application/json" if _wants_plain_json(accept) else ACTUATOR_JSON
        managers = self.config.cache_managers
        if path == "/actuator/nacosdiscovery" and method == "GET":
            return _json(self.nacos_discovery(), json_type)
        if path == "/actuator/caches":
            if method == "DELETE":
                for manager, caches in managers.items():
                    for cache in caches:
                        self._cleared(manager, cache)
                return 204, b"", {}
            listed = {
                m: {"caches": {c: {"target": CAFFEINE_TARGET} for c in caches}}
                for m, caches in managers.items()
            }
            return _json({"cacheManagers": listed}, json_type)
        if path.startswith("/actuator/caches/") and path.count("/") == 3:
            cache = unquote(path.rsplit("/", 1)[1])
            wanted = query.get("cacheManager")
            holders = [
                m for m, caches in managers.items() if cache in caches and wanted in (None, m)
            ]
            if len(holders) > 1:
                return 400, b"", {}
            if not holders:
                return 404, b"", {}
            if method == "DELETE":
                self._cleared(holders[0], cache)
                return 204, b"", {}
            entry = {"target": CAFFEINE_TARGET, "name": cache, "cacheManager": holders[0]}
            return _json(entry, json_type)
        return _spring_error(404, path)

    def _cleared(self, manager: str, cache: str) -> None:
        """A cache cleared through the actuator; only the load balancer's has an effect here."""
        if manager != LB_CACHE_MANAGER or cache != LB_CACHE:
            return
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            self.evictions.append(now)
            if self._lb_entry_at is not None:
                self._lb_entry_at = None
                self._set_routed(self._discovered, now)

    def nacos_discovery(self) -> dict[str, Any]:
        """What SCA's NacosDiscoveryEndpoint shows for a service subscribed with a listener
        (the shape a real Spring Cloud Alibaba 2025 consumer answers, lab/java/APPS.md)."""
        c = self.config
        with self._lock:
            hosts = list(self._discovered)
        grouped = f"{c.group}@@{c.service}"

        def host(instance: str) -> dict[str, Any]:
            ip, port = instance.rsplit(":", 1)
            return {
                "instanceId": f"{ip}#{port}##{grouped}",
                "ip": ip,
                "port": int(port),
                "weight": 1.0,
                "healthy": True,
                "enabled": True,
                "ephemeral": True,
                "clusterName": "DEFAULT",
                "serviceName": grouped,
                "metadata": {},
            }

        return {
            "subscribe": [
                {
                    "name": c.service,
                    "groupName": c.group,
                    "cacheMillis": 1000,
                    "hosts": [host(h) for h in hosts],
                    "lastRefTime": 0,
                    "checksum": "",
                    "allIps": False,
                    "reachProtectionThreshold": False,
                    "valid": True,
                }
            ],
            "NacosDiscoveryProperties": {
                "service": c.name,
                "namespace": "" if c.namespace == "public" else c.namespace,
                "group": c.group,
                "registerEnabled": False,
            },
        }

    def _subscriber_params(self) -> dict[str, str]:
        if not self.management_port:
            return {}
        return {"clientIP": "127.0.0.1", "subscriberPort": str(self.management_port)}

    def _list_url(self) -> tuple[str, dict[str, str]]:
        c = self.config
        params = {
            "namespaceId": c.namespace,
            "groupName": c.group,
            "serviceName": c.service,
            **self._subscriber_params(),
        }
        if c.api == "v3":
            return f"{c.nacos_url}/nacos/v3/client/ns/instance/list", params
        return f"{c.nacos_url}/nacos/v1/ns/instance/list", params

    @staticmethod
    def _hosts(body: Any) -> list[str]:
        hosts = body.get("data") if "data" in body else body.get("hosts")
        out = []
        for h in hosts or []:
            # Like SCA's NacosServiceDiscovery: drop disabled and unhealthy hosts.
            if h.get("enabled", True) and h.get("healthy", True) and h.get("weight", 1) > 0:
                out.append(f"{h['ip']}:{h['port']}")
        return sorted(out)

    def _set_discovered(self, hosts: list[str]) -> None:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if hosts != self._discovered:
                self.list_changes.append((now, hosts))
            self._discovered = hosts
            if self._lb_entry_at is None:
                self._set_routed(hosts, now)

    # --- the load balancer's routing list (call with the lock held) ---

    def _expire(self, now: float) -> None:
        """Drop the cache entry if its TTL has passed: from then on the discovery view routes."""
        ttl = self.config.lb_cache_ttl
        if self._lb_entry_at is not None and now - self._lb_entry_at >= ttl:
            expired_at = self._lb_entry_at + ttl
            self._lb_entry_at = None
            self._set_routed(self._discovered, expired_at)

    def _load_entry(self, now: float) -> None:
        """A request: with no entry, the load balancer loads the discovery view into one (an
        empty list counts as no entry, as in CachingServiceInstanceListSupplier)."""
        self._expire(now)
        if self.config.lb_cache_ttl > 0 and self._lb_entry_at is None and self._discovered:
            self._lb_entry_at = now
            self._set_routed(self._discovered, now)

    def _set_routed(self, hosts: list[str], at: float) -> None:
        for instance in self._routed:
            if instance not in hosts:
                self._left_routing[instance] = at
        for instance in hosts:
            self._left_routing.pop(instance, None)
        self._routed = hosts

    def _auth_params(self, relogin: bool = False) -> dict[str, str]:
        """The Java SDK's way: log in once, pass accessToken as a query parameter."""
        c = self.config
        if c.username is None:
            return {}
        if self._token is None or relogin:
            r = self._registry_http.post(
                f"{c.nacos_url}/nacos/v1/auth/users/login",
                data={"username": c.username, "password": c.password or ""},
                timeout=5.0,
            )
            r.raise_for_status()
            self._token = str(r.json()["accessToken"])
        return {"accessToken": self._token}

    def _refresh_once(self) -> None:
        url, params = self._list_url()
        try:
            response = self._registry_http.get(
                url, params={**params, **self._auth_params()}, timeout=5.0
            )
            if response.status_code == 403:
                response = self._registry_http.get(
                    url, params={**params, **self._auth_params(relogin=True)}, timeout=5.0
                )
            response.raise_for_status()
            self._set_discovered(self._hosts(response.json()))
        except (httpx.HTTPError, ValueError, KeyError, AttributeError):
            with self._lock:
                self.discovery_errors += 1

    def _discover(self) -> None:
        if self.config.registry == "eureka":
            self._fetch_eureka()
            return
        if self.config.discovery == "watch":
            self._watch()
            return
        while not self._stop.wait(self.config.refresh_interval):
            self._refresh_once()

    def _fetch_once(self) -> None:
        assert self._fetcher is not None
        try:
            self._fetcher.refresh()
            self._set_discovered(self._fetcher.up_hosts())
        except (httpx.HTTPError, ValueError, KeyError, AttributeError, TypeError):
            with self._lock:
                self.discovery_errors += 1

    def _fetch_eureka(self) -> None:
        while not self._stop.wait(self.config.refresh_interval):
            self._fetch_once()

    def _watch(self) -> None:
        c = self.config
        revision = 0
        while not self._stop.is_set():
            params = {
                "namespaceId": c.namespace,
                "groupName": c.group,
                "serviceName": c.service,
                "revision": str(revision),
                "timeout": "1",
                **self._subscriber_params(),
            }
            try:
                r = self._registry_http.get(
                    f"{c.nacos_url}/nacos/lab/v1/watch", params={**params, **self._auth_params()}
                )
                body = r.json()
                revision = int(body.get("revision", revision))
                self._set_discovered(self._hosts(body))
            except (httpx.HTTPError, ValueError, KeyError, AttributeError):
                with self._lock:
                    self.discovery_errors += 1
                self._stop.wait(0.5)
            if c.lb_cache_ttl > 0:
                self._set_discovered(self._discovered)

    # --- load ---

    def _schedule(self) -> None:
        c = self.config
        interval = 1.0 / c.rate
        next_at = time.monotonic()
        sent = 0
        while not self._stop.is_set() and sent < c.max_requests:
            now = time.monotonic()
            if c.duration is not None and now - self._started >= c.duration:
                break
            if next_at > now:
                self._stop.wait(next_at - now)
                continue
            next_at += interval
            with self._lock:
                self._load_entry(now)
            self._pool.submit(self._one)
            sent += 1

    def _one(self) -> None:
        # Stamped before the list is read: a request started after an eviction routed by the
        # list the eviction left.
        start = time.monotonic()
        with self._lock:
            hosts = self._routed
        if not hosts:
            self._record(Record(start, start, "-", "no_instance"))
            return
        instance = hosts[next(self._rr) % len(hosts)]
        try:
            response = self._http.get(f"http://{instance}{self.config.path}")
            outcome = (
                "ok"
                if response.status_code < 400
                else "http_5xx"
                if response.status_code >= 500
                else "http_other"
            )
        except httpx.HTTPError as exc:
            outcome = classify(exc)
        self._record(Record(start, time.monotonic(), instance, outcome))

    def _record(self, record: Record) -> None:
        with self._lock:
            if len(self._records) < MAX_RECORDS:
                self._records.append(record)

    # --- results ---

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def routed(self) -> list[str]:
        """What a request sent now would route by."""
        with self._lock:
            self._expire(time.monotonic())
            return list(self._routed)

    def routable_until(self, instance: str) -> float | None:
        """The last moment (time.monotonic()) ``instance`` (``ip:port``) was in the routing
        list: now if it still is, None if it never was."""
        with self._lock:
            now = time.monotonic()
            if self._stopped_at is not None:
                now = min(now, self._stopped_at)
            self._expire(now)
            if instance in self._routed:
                return now
            return self._left_routing.get(instance)

    def stats(self) -> dict[str, Any]:
        records = self.records()
        errors = Counter(r.outcome for r in records if r.outcome != "ok")
        per_instance = Counter(r.instance for r in records)
        ok = sum(1 for r in records if r.outcome == "ok")
        return {
            "total": len(records),
            "ok": ok,
            "errors": len(records) - ok,
            "errors_by_kind": dict(errors),
            "per_instance": dict(per_instance),
            "discovery_errors": self.discovery_errors,
        }


def _basic_ok(header: str | None, auth: tuple[str, str]) -> bool:
    if header is None or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[len("Basic ") :], validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(given, f"{auth[0]}:{auth[1]}".encode())


def _wants_plain_json(accept: str) -> bool:
    # Spring picks the first type the client accepts: the actuator's own unless only plain
    # JSON is asked for.
    return "application/json" in accept and "actuator" not in accept and "*/*" not in accept


def _json(body: Any, content_type: str) -> tuple[int, bytes, dict[str, str]]:
    return 200, json.dumps(body).encode(), {"Content-Type": content_type}


def _spring_error(
    status: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """Spring Boot's error page as JSON."""
    body = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "status": status,
        "error": {401: "Unauthorized", 404: "Not Found"}.get(status, "Error"),
        "path": path,
    }
    return (
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m prestop_lab.consumer")
    p.add_argument("--nacos-url", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--api", choices=["v1", "v3"], default="v1")
    p.add_argument("--discovery", choices=["poll", "watch"], default="poll")
    p.add_argument("--refresh-interval", type=float, default=1.0)
    p.add_argument("--lb-cache-ttl", type=float, default=0.0)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    consumer = Consumer(
        ConsumerConfig(
            nacos_url=args.nacos_url,
            service=args.service,
            api=args.api,
            discovery=args.discovery,
            refresh_interval=args.refresh_interval,
            lb_cache_ttl=args.lb_cache_ttl,
            rate=args.rate,
            duration=args.duration,
        )
    )
    consumer.start()
    time.sleep(args.duration)
    consumer.stop()
    print(json.dumps(consumer.stats()), flush=True)


if __name__ == "__main__":
    main()
