"""Evidence from the consumers themselves: which subscribers still list this instance.

The registry says who subscribes to the service; a subscriber that runs Spring Cloud Alibaba
exposes its Nacos client's cache at ``/actuator/nacosdiscovery`` on its management port. Polling
those shows, per consumer, when it let go of the instance. It is evidence beside the traffic
signals, never a replacement: a load-balancer cache can hold the instance after the Nacos
client dropped it, so this never ends a drain by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from agent.addresses import same_ip
from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError
from agent.logs import get_logger

log = get_logger()


@dataclass(frozen=True)
class Subscriber:
    client_id: str
    ip: str
    port: int


class SubscriberSource(Protocol):
    def subscribers(self, deadline: Deadline) -> list[Subscriber]: ...


@dataclass
class _Seen:
    holding: bool | None = None
    let_go_after: float | None = None
    error: str | None = None
    blind: bool = False  # its view does not show the service's hosts


@dataclass
class ConsumerView:
    """Polls each subscriber's nacosdiscovery endpoint, at most every ``interval`` seconds."""

    source: SubscriberSource
    http: httpx.Client
    clock: Clock
    ip: str
    port: int
    service: str
    management_port: int | None = None  # None: the port the registry reports
    interval: float = 1.0
    http_timeout: float = 1.0
    _started: float | None = None
    _last_poll: float = float("-inf")
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _polls: int = 0

    def poll(self, deadline: Deadline) -> None:
        now = self.clock.now()
        if self._started is None:
            self._started = now
        if now - self._last_poll < self.interval or deadline.remaining() < 2 * self.http_timeout:
            return
        self._last_poll = now
        try:
            subscribers = self.source.subscribers(deadline)
        except AgentError as exc:
            log.info("consumers_unavailable", error=str(exc))
            return
        if self._polls == 0:
            log.info("consumers_found", subscribers=len(subscribers))
        self._polls += 1
        for sub in subscribers:
            self._check(sub, deadline, now)

    def _check(self, sub: Subscriber, deadline: Deadline, now: float) -> None:
        port = self.management_port or sub.port
        seen = self._seen.setdefault(f"{sub.ip}:{port}", _Seen())
        if not port:
            seen.error = "no management port: set --consumer-port"
            return
        try:
            response = self.http.get(
                f"http://{sub.ip}:{port}/actuator/nacosdiscovery",
                timeout=deadline.timeout(self.http_timeout),
            )
            holding = self._holds(response.json())
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            seen.error = type(exc).__name__
            return
        seen.error = None
        if holding is None:
            # Spring Cloud Alibaba's endpoint lists only services subscribed with a listener,
            # and never their hosts (seen on the real consumer): an empty view is no evidence.
            if not seen.blind:
                log.info("consumer_view_unknown", consumer=f"{sub.ip}:{port}")
            seen.blind = True
            return
        seen.blind = False
        if seen.holding is not False and not holding:
            # At the first look a consumer may already have let go: "by now", not "exactly".
            seen.let_go_after = now - (self._started or now)
            log.info(
                "consumer_let_go", consumer=f"{sub.ip}:{port}", after_s=round(seen.let_go_after, 3)
            )
        seen.holding = holding

    def _holds(self, body: Any) -> bool | None:
        """Whether the consumer's view lists us; None when it does not show the service's hosts."""
        for info in body.get("subscribe") or [] if isinstance(body, dict) else []:
            name = str(info.get("name", ""))
            hosts = info.get("hosts")
            if name.split("@@")[-1] != self.service or not isinstance(hosts, list):
                continue
            for host in hosts:
                if same_ip(host.get("ip"), self.ip) and int(host.get("port", 0)) == self.port:
                    return host.get("enabled", True) is not False
            return False
        return None

    def summary(self) -> dict[str, Any]:
        still = sorted(k for k, v in self._seen.items() if v.holding)
        if still:
            log.info("consumers_still_holding", consumers=still)
        return {
            "consumers": len(self._seen),
            "let_go": {
                k: round(v.let_go_after, 3)
                for k, v in self._seen.items()
                if v.let_go_after is not None
            },
            "still_holding": still,
            "unreachable": sorted(k for k, v in self._seen.items() if v.error),
            "view_unknown": sorted(k for k, v in self._seen.items() if v.blind),
        }
