"""Tell the consumers: evict each subscriber's load-balancer cache once its own view let go.

Nacos pushes a change to its subscribers within about half a second, but Spring Cloud
LoadBalancer keeps its own copy of the instance list for 35 s. A Spring Boot consumer exposes
both on its management port, so for every subscriber of the service the agent:

1. polls the consumer's discovery view (``GET {actuator}/nacosdiscovery``, Spring Cloud
   Alibaba) until it no longer lists this instance, i.e. the push has arrived;
2. finds the load-balancer cache in ``GET {actuator}/caches`` and evicts it
   (``DELETE {actuator}/caches/CachingServiceInstanceListSupplierCache?cacheManager=…``); the
   consumer's next request rebuilds its list from the view that no longer has us.

The order is the point: evicting before the view let go would refill the cache from the stale
view and keep us listed for another TTL. A subscriber for which both steps worked has *let go*.
When every subscriber has let go (the drain's ``knowledge``), no new request can be routed to
us through the registry, and the drain may end as soon as nothing is in flight; see
:func:`agent.drain.policy.decide`. A subscriber that cannot be confirmed (no actuator, refused,
no hosts in its view, a client that is not Spring) is *unconfirmed*: it never counts as let go,
so the drain falls back to its quiet window and names that subscriber. Errors that may pass
(timeouts, refused connections, garbage) are retried each round until the drain ends.

Synchronous by design: the drain loop calls :meth:`ConsumerTracker.poll` between traffic
samples; one round asks all pending consumers in parallel, each call bounded by the Deadline
and ``CALL_TIMEOUT``, so a slow consumer delays the next traffic sample by at most that.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from agent.addresses import same_ip
from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError, DeadlineExceeded, json_of
from agent.httpcall import send
from agent.logs import get_logger

log = get_logger()

# Spring Cloud LoadBalancer's name for the instance-list cache (CachingServiceInstanceListSupplier).
LB_CACHE = "CachingServiceInstanceListSupplierCache"
CALL_TIMEOUT = 1.0  # seconds; a consumer's management port answers fast or not at all
MAX_PARALLEL = 8
ERROR_CHARS = 120


@dataclass(frozen=True)
class Subscriber:
    client_id: str
    ip: str
    port: int  # as the registry reports it; 0 for gRPC clients
    agent: str = ""  # the client's own description, e.g. "Nacos-Java-Client:v3.0.3"


class SubscriberSource(Protocol):
    def subscribers(self, deadline: Deadline) -> list[Subscriber] | None:
        """The service's subscribers; None when this registry cannot list them."""
        ...


@dataclass(frozen=True)
class ConsumerSettings:
    """How to reach subscribers' actuators: a URL template with ``{ip}`` and maybe ``{port}``."""

    actuator: str  # e.g. "http://{ip}:8081/actuator"; {port}: the port the registry reports
    auth: tuple[str, str] | None = field(default=None, repr=False)
    settle: float = 0.2  # seconds after the last let-go for requests already on the wire
    interval: float = 0.2  # seconds between rounds

    def base_url(self, sub: Subscriber) -> str | None:
        """The subscriber's actuator base URL; None when the template needs a port we lack."""
        if "{port}" in self.actuator and not sub.port:
            return None
        host = f"[{sub.ip}]" if ":" in sub.ip else sub.ip
        # str.replace, not str.format: the template is user input.
        return self.actuator.replace("{ip}", host).replace("{port}", str(sub.port)).rstrip("/")


State = Literal["holding", "let_go", "unconfirmed"]
Level = Literal["ok", "warn", "fail"]


@dataclass
class _Consumer:
    name: str  # host:port of its actuator, as logged
    base: str | None
    agent: str
    state: State = "holding"
    reason: str = ""  # why unconfirmed, or the last passing error
    errors: int = 0
    let_go_after: float | None = None


class _Unconfirmed(Exception):
    """This consumer can never be confirmed: the reason is final."""


class _Passing(Exception):
    """This round failed in a way that may pass (timeout, refused, garbage): try again."""


@dataclass
class ConsumerTracker:
    """Per subscriber: wait for its view to let go, then evict its load-balancer cache."""

    source: SubscriberSource
    settings: ConsumerSettings
    http: httpx.Client
    clock: Clock
    ip: str
    port: int
    service: str
    http_timeout: float = CALL_TIMEOUT
    _started: float | None = None
    _last_round: float = float("-inf")
    _listed: bool = False
    _unlisted_reason: str = ""
    _consumers: dict[str, _Consumer] = field(default_factory=dict)
    _knowledge_at: float | None = None

    # --- what the drain reads ---

    @property
    def knowledge_at(self) -> float | None:
        """When every subscriber had let go (clock time); None until then, or never."""
        return self._knowledge_at

    @property
    def forced_fallback(self) -> list[str]:
        """The subscribers (or the registry) that keep the drain on its quiet window."""
        if not self._listed:
            return [f"registry ({self._unlisted_reason or 'subscribers not listed yet'})"]
        return sorted(
            f"{c.name} ({c.reason or c.state})"
            for c in self._consumers.values()
            if c.state != "let_go"
        )

    def poll(self, deadline: Deadline) -> None:
        """One round, at most every ``settings.interval`` seconds; never raises."""
        now = self.clock.now()
        if self._started is None:
            self._started = now
        if self._knowledge_at is not None or now - self._last_round < self.settings.interval:
            return
        if deadline.remaining() < 2 * self._call_timeout():
            return
        self._last_round = now
        if not self._listed and not self._list(deadline):
            return
        pending = [c for c in self._consumers.values() if c.state == "holding"]
        if pending:
            workers = min(MAX_PARALLEL, len(pending))
            if workers == 1:
                self._step(pending[0], deadline)
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="consumer") as pool:
                    list(pool.map(lambda c: self._step(c, deadline), pending))
        if all(c.state == "let_go" for c in self._consumers.values()):
            self._knowledge_at = self.clock.now()
            log.info(
                "consumers_all_let_go",
                consumers=len(self._consumers),
                after_s=round(self._knowledge_at - self._started, 3),
            )

    # --- the steps ---

    def _list(self, deadline: Deadline) -> bool:
        try:
            subs = self.source.subscribers(deadline)
        except AgentError as exc:
            self._unlisted_reason = "subscriber list unavailable"
            log.info("consumers_unavailable", error=str(exc)[:ERROR_CHARS])
            return False
        if subs is None:
            self._unlisted_reason = "this registry lists no subscribers"
            self._listed = False
            self._knowledge_at = None
            log.info("consumers_unlisted", reason=self._unlisted_reason)
            # Nothing will change on a later round: stop asking.
            self._last_round = float("inf")
            return False
        self._listed = True
        for sub in subs:
            base = self.settings.base_url(sub)
            name = _name(base) if base else f"{sub.ip}:{sub.port}"
            if name in self._consumers:
                continue  # several clients behind one management port are one consumer
            consumer = _Consumer(name, base, sub.agent)
            if base is None:
                consumer.state = "unconfirmed"
                consumer.reason = "no port: put one in --consumer-actuator"
                log.warning("consumer_unconfirmed", consumer=name, reason=consumer.reason)
            self._consumers[name] = consumer
        log.info(
            "consumers_found",
            subscribers=len(subs),
            consumers=sorted(self._consumers),
            agents=sorted({s.agent for s in subs if s.agent}),
        )
        return True

    def _step(self, c: _Consumer, deadline: Deadline) -> None:
        try:
            if self._view_holds(c, deadline):
                return
            managers = self._cache_managers(c, deadline)
            for manager in managers:
                self._evict(c, manager, deadline)
        except _Unconfirmed as exc:
            c.state, c.reason = "unconfirmed", str(exc)
            log.warning("consumer_unconfirmed", consumer=c.name, reason=c.reason, agent=c.agent)
            return
        except (_Passing, DeadlineExceeded) as exc:
            # Out of time is no news about the consumer: it stays holding, as for a timeout.
            c.errors += 1
            if c.errors == 1 or str(exc) != c.reason:
                log.info("consumer_unreachable", consumer=c.name, error=str(exc))
            c.reason = str(exc)
            return
        c.state, c.reason = "let_go", ""
        c.let_go_after = self.clock.now() - (self._started or self.clock.now())
        log.info(
            "consumer_let_go",
            consumer=c.name,
            after_s=round(c.let_go_after, 3),
            evicted=[f"{m}/{LB_CACHE}" for m in managers],
        )

    def _get(self, c: _Consumer, path: str, deadline: Deadline, what: str) -> Any:
        response = self._call("GET", c, path, deadline)
        if response.status_code in (401, 403):
            raise _Unconfirmed(
                f"{what}: HTTP {response.status_code}; give credentials with --consumer-auth-file"
            )
        if response.status_code == 404:
            raise _Unconfirmed(
                f"{what}: HTTP 404; expose it (management.endpoints.web.exposure.include)"
            )
        if response.status_code != 200:
            raise _Passing(f"{what}: HTTP {response.status_code}")
        try:
            return json_of(response)
        except ValueError:
            raise _Passing(f"{what}: not JSON") from None

    def _view_holds(self, c: _Consumer, deadline: Deadline) -> bool:
        body = self._get(c, "/nacosdiscovery", deadline, "nacosdiscovery")
        holding = holds(body, self.service, self.ip, self.port)
        if holding is None:
            # Spring Cloud Alibaba lists only services subscribed with a listener, so an
            # empty view is no evidence that the consumer let go.
            raise _Unconfirmed(
                "its nacosdiscovery view does not list the service's hosts "
                "(subscribe with a listener)"
            )
        return holding

    def _cache_managers(self, c: _Consumer, deadline: Deadline) -> list[str]:
        body = self._get(c, "/caches", deadline, "caches")
        managers = body.get("cacheManagers") if isinstance(body, dict) else None
        if not isinstance(managers, dict):
            raise _Passing("caches: unexpected JSON")
        found = [
            str(name)
            for name, manager in managers.items()
            if isinstance(manager, dict)
            and isinstance(manager.get("caches"), dict)
            and LB_CACHE in manager["caches"]
        ]
        if not found:
            raise _Unconfirmed(
                f"/caches lists no {LB_CACHE} (the load-balancer cache manager is not exposed)"
            )
        return found

    def _evict(self, c: _Consumer, manager: str, deadline: Deadline) -> None:
        path = f"/caches/{LB_CACHE}?cacheManager={quote(manager, safe='')}"
        response = self._call("DELETE", c, path, deadline)
        if response.status_code in (200, 204):
            return
        if response.status_code in (401, 403):
            raise _Unconfirmed(
                f"evict: HTTP {response.status_code}; give credentials with --consumer-auth-file"
            )
        if response.status_code in (404, 405):
            raise _Unconfirmed(f"evict: HTTP {response.status_code}")
        raise _Passing(f"evict: HTTP {response.status_code}")

    def _call(self, method: str, c: _Consumer, path: str, deadline: Deadline) -> httpx.Response:
        assert c.base is not None
        return send(
            self.http,
            method,
            c.base + path,
            deadline,
            self._call_timeout(),
            _Passing,
            what=path.partition("?")[0].lstrip("/"),
            auth=self.settings.auth,
        )

    def _call_timeout(self) -> float:
        return min(self.http_timeout, CALL_TIMEOUT)

    # --- the record ---

    def summary(self) -> dict[str, Any]:
        consumers = self._consumers.values()
        if self._knowledge_at is None and self._started is not None:
            log.info("consumers_not_all_let_go", forced_by=self.forced_fallback)
        return {
            "listed": self._listed,
            "consumers": len(self._consumers),
            "all_let_go_after_s": None
            if self._knowledge_at is None or self._started is None
            else round(self._knowledge_at - self._started, 3),
            "let_go": {
                c.name: round(c.let_go_after, 3) for c in consumers if c.let_go_after is not None
            },
            "still_holding": sorted(c.name for c in consumers if c.state == "holding"),
            "unconfirmed": {c.name: c.reason for c in consumers if c.state == "unconfirmed"},
        }

    # --- prestop check ---

    def probe(self, deadline: Deadline) -> list[tuple[str, Level, str]]:
        """Per subscriber (name, level, message): reachable, view readable, cache exposed."""
        try:
            subs = self.source.subscribers(deadline)
        except AgentError as exc:
            return [("consumers", "warn", f"subscriber list unavailable: {exc}")]
        if subs is None:
            return [("consumers", "warn", "this registry lists no subscribers")]
        if not subs:
            return [("consumers", "ok", f"no subscriber of {self.service} right now")]
        out: list[tuple[str, Level, str]] = []
        seen: set[str] = set()
        for sub in subs:
            base = self.settings.base_url(sub)
            if base is None:
                out.append((f"{sub.ip}", "warn", "no port: put one in --consumer-actuator"))
                continue
            c = _Consumer(_name(base), base, sub.agent)
            if c.name in seen:
                continue
            seen.add(c.name)
            out.append(self._probe_one(c, deadline))
        return out

    def _probe_one(self, c: _Consumer, deadline: Deadline) -> tuple[str, Level, str]:
        try:
            view = holds(self._get(c, "/nacosdiscovery", deadline, "nacosdiscovery"), *self._us())
            if view is None:
                raise _Unconfirmed("its nacosdiscovery view does not list the service's hosts")
            self._cache_managers(c, deadline)
        except (_Unconfirmed, _Passing, DeadlineExceeded) as exc:
            return (c.name, "warn", f"{exc}; the drain will fall back to its quiet window")
        agent = f" ({c.agent})" if c.agent else ""
        return (c.name, "ok", f"reachable{agent}, view readable, load-balancer cache exposed")

    def _us(self) -> tuple[str, str, int]:
        return self.service, self.ip, self.port


def _name(base: str) -> str:
    return httpx.URL(base).netloc.decode("ascii", "replace").rpartition("@")[2]


def holds(body: Any, service: str, ip: str, port: int) -> bool | None:
    """Whether a nacosdiscovery view lists ip:port; None when it does not show the hosts."""
    subscribed = body.get("subscribe") if isinstance(body, dict) else None
    for info in subscribed if isinstance(subscribed, list) else []:
        if not isinstance(info, dict):
            continue
        name = str(info.get("name", ""))
        hosts = info.get("hosts")
        if name.split("@@")[-1] != service or not isinstance(hosts, list):
            continue
        for host in hosts:
            if not isinstance(host, dict):
                continue
            try:
                host_port = int(host.get("port", 0))
            except (TypeError, ValueError):
                continue
            if same_ip(host.get("ip"), ip) and host_port == port:
                return host.get("enabled", True) is not False
        return False
    return None
