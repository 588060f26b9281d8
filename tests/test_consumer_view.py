"""Consumers' own view of the instance, from /actuator/nacosdiscovery, over a mock transport."""

from __future__ import annotations

import json
from typing import Any

import httpx

from agent.consumers import ConsumerView, Subscriber
from agent.deadline import Deadline
from tests.fakes import FakeClock


class Source:
    def subscribers(self, deadline: Deadline) -> list[Subscriber]:
        return [Subscriber("c1", "10.0.0.9", 8081)]


def view(bodies: list[Any], clock: FakeClock) -> ConsumerView:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=json.dumps(bodies[0]))

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return ConsumerView(Source(), http, clock, "10.0.0.5", 8080, "orders", interval=1.0)


def poll(v: ConsumerView, clock: FakeClock) -> None:
    v.poll(Deadline.after(clock, 10))
    clock.advance(1.0)


def test_let_go_when_the_view_drops_us(clock: FakeClock) -> None:
    us = {"ip": "10.0.0.5", "port": 8080, "enabled": True}
    other = {"ip": "10.0.0.6", "port": 8080, "enabled": True}
    bodies: list[Any] = [{"subscribe": [{"name": "DEFAULT_GROUP@@orders", "hosts": [us, other]}]}]
    v = view(bodies, clock)
    poll(v, clock)
    bodies[0] = {"subscribe": [{"name": "DEFAULT_GROUP@@orders", "hosts": [other]}]}
    poll(v, clock)
    summary = v.summary()
    assert list(summary["let_go"]) == ["10.0.0.9:8081"]
    assert summary["view_unknown"] == []


def test_a_view_without_hosts_is_not_evidence(clock: FakeClock) -> None:
    """The real Spring Cloud Alibaba consumer answers ``"subscribe": []`` while it routes to us:
    that must not read as "let go"."""
    bodies: list[dict[str, object]] = [
        {"subscribe": []},
        {"subscribe": [{"name": "DEFAULT_GROUP@@orders"}]},
        {},
    ]
    for body in bodies:
        v = view([body], clock)
        poll(v, clock)
        poll(v, clock)
        summary = v.summary()
        assert summary["let_go"] == {}
        assert summary["view_unknown"] == ["10.0.0.9:8081"]


def test_garbage_is_unreachable_not_let_go(clock: FakeClock) -> None:
    for body in (
        [1, 2],
        {"subscribe": [{"name": "orders", "hosts": [{"ip": "10.0.0.5", "port": "y"}]}]},
    ):
        v = view([body], clock)
        poll(v, clock)
        summary = v.summary()
        assert summary["let_go"] == {}
