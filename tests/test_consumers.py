"""Telling the consumers: each subscriber's view, then its load-balancer cache, over MockTransport.

The fake consumers answer with Spring Boot's and Spring Cloud Alibaba's status codes and JSON
shapes: ``/actuator/nacosdiscovery`` lists the hosts of subscribed services, ``/actuator/caches``
lists cache managers, ``DELETE /actuator/caches/{name}?cacheManager=`` answers 204 (404 when
unknown).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from agent.consumers import LB_CACHE, ConsumerSettings, ConsumerTracker, Subscriber, holds
from agent.deadline import Deadline
from agent.exceptions import RegistryError
from tests.fakes import FakeClock

US = {"ip": "10.0.0.5", "port": 8080, "enabled": True}
OTHER = {"ip": "10.0.0.6", "port": 8080, "enabled": True}
MANAGER = "caffeineLoadBalancerCacheManager"


@dataclass
class FakeConsumer:
    """One Spring Boot consumer's management port."""

    hosts: list[dict[str, Any]] = field(default_factory=lambda: [US, OTHER])
    exposes: bool = True  # False: 404 on everything, like an app that exposes nothing
    lists_hosts: bool = True  # False: SCA without a listener subscription ("subscribe": [])
    cache_listed: bool = True
    down: bool = False
    garbage: bool = False
    needs_auth: tuple[str, str] | None = None
    calls: list[str] = field(default_factory=list)
    evicted_while_holding: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.garbage:
            return httpx.Response(200, text="<html>not json")
        if self.needs_auth is not None:
            token = base64.b64encode(":".join(self.needs_auth).encode()).decode()
            if request.headers.get("Authorization") != f"Basic {token}":
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        if not self.exposes:
            return httpx.Response(404, json={"status": 404, "error": "Not Found"})
        if path == "/actuator/nacosdiscovery" and request.method == "GET":
            sub: dict[str, Any] = {"name": "DEFAULT_GROUP@@orders", "groupName": "DEFAULT_GROUP"}
            if self.lists_hosts:
                sub["hosts"] = self.hosts
            return httpx.Response(200, json={"subscribe": [sub] if self.lists_hosts else []})
        if path == "/actuator/caches" and request.method == "GET":
            caches = {LB_CACHE: {"target": "x"}} if self.cache_listed else {}
            return httpx.Response(200, json={"cacheManagers": {MANAGER: {"caches": caches}}})
        if path == f"/actuator/caches/{LB_CACHE}" and request.method == "DELETE":
            if request.url.params.get("cacheManager") != MANAGER or not self.cache_listed:
                return httpx.Response(404)
            if any(h["ip"] == US["ip"] for h in self.hosts):
                self.evicted_while_holding += 1
            return httpx.Response(204)
        return httpx.Response(404)

    def evictions(self) -> int:
        return sum(1 for c in self.calls if c.startswith("DELETE"))


class Source:
    def __init__(self, subs: list[Subscriber] | Exception | None) -> None:
        self.subs = subs

    def subscribers(self, deadline: Deadline) -> list[Subscriber] | None:
        if isinstance(self.subs, Exception):
            raise self.subs
        return self.subs


def tracker(
    consumers: dict[str, FakeConsumer],
    clock: FakeClock,
    *,
    subs: list[Subscriber] | Exception | None = None,
    template: str = "http://{ip}:8081/actuator",
    auth: tuple[str, str] | None = None,
) -> ConsumerTracker:
    def handler(request: httpx.Request) -> httpx.Response:
        return consumers[request.url.host].handle(request)

    if subs is None and not isinstance(subs, Exception):
        subs = [Subscriber(f"c{i}", ip, 0) for i, ip in enumerate(consumers)]
    return ConsumerTracker(
        source=Source(subs),
        settings=ConsumerSettings(actuator=template, auth=auth),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=clock,
        ip="10.0.0.5",
        port=8080,
        service="orders",
    )


def known(t: ConsumerTracker) -> bool:
    return t.knowledge_at is not None


def rounds(t: ConsumerTracker, clock: FakeClock, n: int = 1) -> None:
    for _ in range(n):
        t.poll(Deadline.after(clock, 30))
        clock.advance(0.25)


def test_evicts_only_after_the_view_let_go_then_knows(clock: FakeClock) -> None:
    a, b = FakeConsumer(), FakeConsumer()
    t = tracker({"10.0.0.9": a, "10.0.0.10": b}, clock)
    rounds(t, clock, 3)
    assert not known(t)
    assert a.evictions() == b.evictions() == 0  # evicting now would refill the stale list
    a.hosts = [OTHER]
    rounds(t, clock, 2)
    assert a.evictions() == 1 and b.evictions() == 0
    assert not known(t)
    b.hosts = [OTHER]
    with capture_logs() as logs:
        rounds(t, clock)
    assert known(t)
    assert a.evicted_while_holding == b.evicted_while_holding == 0
    events = [e["event"] for e in logs]
    assert "consumer_let_go" in events and "consumers_all_let_go" in events
    summary = t.summary()
    assert set(summary["let_go"]) == {"10.0.0.9:8081", "10.0.0.10:8081"}
    assert summary["unconfirmed"] == {} and summary["still_holding"] == []
    rounds(t, clock, 3)
    assert a.evictions() == b.evictions() == 1  # once let go, a consumer is left alone


def test_a_disabled_host_in_the_view_counts_as_let_go(clock: FakeClock) -> None:
    a = FakeConsumer(hosts=[{**US, "enabled": False}, OTHER])
    t = tracker({"10.0.0.9": a}, clock)
    rounds(t, clock)
    assert known(t)


@pytest.mark.parametrize(
    ("consumer", "reason"),
    [
        (FakeConsumer(exposes=False), "HTTP 404"),
        (FakeConsumer(lists_hosts=False), "listener"),
        (FakeConsumer(hosts=[OTHER], cache_listed=False), LB_CACHE),
        (FakeConsumer(needs_auth=("ops", "s3cret-pw")), "--consumer-auth-file"),
    ],
    ids=["no-actuator", "view-without-hosts", "cache-not-exposed", "credentials-refused"],
)
def test_a_consumer_that_cannot_be_confirmed_forces_the_quiet_window(
    consumer: FakeConsumer, reason: str, clock: FakeClock
) -> None:
    good = FakeConsumer(hosts=[OTHER])
    t = tracker({"10.0.0.9": consumer, "10.0.0.10": good}, clock)
    with capture_logs() as logs:
        rounds(t, clock, 5)
    assert not known(t)
    assert good.evictions() == 1  # the others are still told
    forced = t.forced_fallback
    assert len(forced) == 1 and forced[0].startswith("10.0.0.9:8081") and reason in forced[0]
    unconfirmed = [e for e in logs if e["event"] == "consumer_unconfirmed"]
    assert len(unconfirmed) == 1 and unconfirmed[0]["consumer"] == "10.0.0.9:8081"
    assert "s3cret-pw" not in json.dumps(logs)


@pytest.mark.parametrize(
    "broken",
    [FakeConsumer(down=True), FakeConsumer(garbage=True)],
    ids=["down", "garbage"],
)
def test_a_consumer_down_or_answering_garbage_never_shortens_the_drain(
    broken: FakeConsumer, clock: FakeClock
) -> None:
    t = tracker({"10.0.0.9": broken}, clock)
    rounds(t, clock, 20)
    assert not known(t)
    assert broken.evictions() == 0
    assert t.forced_fallback[0].startswith("10.0.0.9:8081")
    broken.down = broken.garbage = False  # it recovers: the passing error is retried
    broken.hosts = [OTHER]
    rounds(t, clock, 2)
    assert known(t)


def test_basic_auth_is_sent_when_configured(clock: FakeClock) -> None:
    a = FakeConsumer(hosts=[OTHER], needs_auth=("ops", "s3cret-pw"))
    t = tracker({"10.0.0.9": a}, clock, auth=("ops", "s3cret-pw"))
    rounds(t, clock)
    assert known(t) and a.evictions() == 1


def test_a_registry_that_lists_no_subscribers_forces_the_quiet_window(clock: FakeClock) -> None:
    t = tracker({}, clock, subs=None)
    t.source = Source(None)
    rounds(t, clock, 3)
    assert not known(t)
    assert t.forced_fallback == ["registry (this registry lists no subscribers)"]


def test_an_unreadable_subscriber_list_is_retried(clock: FakeClock) -> None:
    a = FakeConsumer(hosts=[OTHER])
    t = tracker({"10.0.0.9": a}, clock, subs=RegistryError("HTTP 503"))
    rounds(t, clock, 3)
    assert not known(t) and t.forced_fallback[0].startswith("registry")
    t.source = Source([Subscriber("c", "10.0.0.9", 0)])
    rounds(t, clock)
    assert known(t)


def test_no_subscriber_at_all_is_knowledge(clock: FakeClock) -> None:
    t = tracker({}, clock, subs=[])
    rounds(t, clock)
    assert known(t)


def test_port_placeholder_needs_a_reported_port(clock: FakeClock) -> None:
    a = FakeConsumer(hosts=[OTHER])
    subs = [Subscriber("grpc", "10.0.0.9", 0), Subscriber("udp", "10.0.0.10", 8081)]
    t = tracker({"10.0.0.9": a, "10.0.0.10": FakeConsumer(hosts=[OTHER])}, clock, subs=subs)
    t.settings = ConsumerSettings(actuator="http://{ip}:{port}/actuator")
    rounds(t, clock, 2)
    assert not known(t)
    assert t.summary()["unconfirmed"] == {"10.0.0.9:0": "no port: put one in --consumer-actuator"}
    assert list(t.summary()["let_go"]) == ["10.0.0.10:8081"]


def test_clients_behind_one_management_port_are_one_consumer(clock: FakeClock) -> None:
    a = FakeConsumer(hosts=[OTHER])
    subs = [Subscriber("x", "10.0.0.9", 0), Subscriber("y", "10.0.0.9", 0)]
    t = tracker({"10.0.0.9": a}, clock, subs=subs)
    rounds(t, clock)
    assert t.summary()["consumers"] == 1 and a.evictions() == 1


def test_ipv6_consumers_get_bracketed_urls() -> None:
    settings = ConsumerSettings(actuator="http://{ip}:8081/actuator/")
    assert settings.base_url(Subscriber("c", "fd00::9", 0)) == "http://[fd00::9]:8081/actuator"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"subscribe": [{"name": "DEFAULT_GROUP@@orders", "hosts": [US]}]}, True),
        ({"subscribe": [{"name": "orders", "hosts": [OTHER]}]}, False),
        ({"subscribe": [{"name": "orders", "hosts": [{"ip": "10.0.0.5", "port": "x"}]}]}, False),
        ({"subscribe": [{"name": "payments", "hosts": []}]}, None),
        ({"subscribe": [{"name": "orders"}]}, None),
        ({"subscribe": "orders"}, None),
        ([], None),
        ({}, None),
    ],
)
def test_holds_reads_spring_cloud_alibabas_view(body: Any, expected: bool | None) -> None:
    assert holds(body, "orders", "10.0.0.5", 8080) is expected


def test_probe_reports_each_subscriber(clock: FakeClock) -> None:
    consumers = {
        "10.0.0.9": FakeConsumer(),
        "10.0.0.10": FakeConsumer(exposes=False),
        "10.0.0.11": FakeConsumer(lists_hosts=False),
    }
    t = tracker(consumers, clock)
    found = {name: (level, msg) for name, level, msg in t.probe(Deadline.after(clock, 10))}
    assert found["10.0.0.9:8081"][0] == "ok"
    assert found["10.0.0.10:8081"][0] == "warn" and "404" in found["10.0.0.10:8081"][1]
    assert found["10.0.0.11:8081"][0] == "warn" and "hosts" in found["10.0.0.11:8081"][1]
    assert all(c.evictions() == 0 for c in consumers.values())  # check writes nothing
