"""The consumer-actuator tracker and the traffic signals against recorded real answers.

The consumer is the lab's Spring Cloud consumer (Spring Cloud Alibaba discovery, Spring Cloud
LoadBalancer with its cache) subscribed to the recorded Nacos 2.3.1; the signals read the lab's
Spring Boot provider after five business requests (``answers/README.md``).
"""

from __future__ import annotations

import httpx
import pytest

from agent.consumers import ConsumerSettings, ConsumerTracker, holds
from agent.deadline import Deadline
from agent.drain.signals import ActuatorMetricsSignal, PrometheusSignal
from agent.exceptions import DeadlineExceeded, SignalUnavailable
from tests.fakes import FakeClock
from tests.registry.replay import Replay
from tests.registry.test_nacos import V2, adapter, recorded_port, settings

APP = "http://app.test:8080/actuator"
PORT = recorded_port(V2)


def dl(clock: FakeClock) -> Deadline:
    return Deadline.after(clock, 20.0)


def tracker(replay: Replay, clock: FakeClock) -> ConsumerTracker:
    reg, http = adapter(replay, settings(V2), clock)
    return ConsumerTracker(
        reg,
        ConsumerSettings(actuator="http://{ip}:8081/actuator", interval=0.2),
        http,
        clock,
        "127.0.0.1",
        PORT,
        "provider",
    )


def knows(t: ConsumerTracker) -> bool:
    """Every subscriber let go (a call, so that mypy does not narrow the property)."""
    return t.knowledge_at is not None


def test_the_views_recorded_hold_us_then_let_go() -> None:
    holding = V2.first("consumer_holding", "GET", "/actuator/nacosdiscovery").json()
    let_go = V2.first("consumer_let_go", "GET", "/actuator/nacosdiscovery").json()
    assert holds(holding, "provider", "127.0.0.1", PORT) is True
    assert holds(let_go, "provider", "127.0.0.1", PORT) is False


def test_the_consumer_lets_go_once_its_view_did(clock: FakeClock) -> None:
    """Round one finds the view still holding us; round two sees it let go and evicts."""
    replay = Replay(V2.step("connect", "subscribers", "consumer_holding", "consumer_let_go"))
    t = tracker(replay, clock)
    t.poll(dl(clock))
    assert not knows(t)
    assert replay.sent("DELETE", "") == []  # never evicted while the view holds us
    clock.advance(0.3)
    t.poll(dl(clock))
    assert knows(t)
    (evict,) = replay.sent("DELETE", "/actuator/caches/CachingServiceInstanceListSupplierCache")
    assert evict.url.params["cacheManager"]
    assert t.summary()["unconfirmed"] == {}


def test_the_probe_finds_the_cache_exposed(clock: FakeClock) -> None:
    replay = Replay(V2.step("connect", "subscribers", "consumer_holding"))
    ((name, level, message),) = tracker(replay, clock).probe(dl(clock))
    assert (name, level) == ("127.0.0.1:8081", "ok"), message
    assert "load-balancer cache exposed" in message


def test_prometheus_counts_the_business_requests(clock: FakeClock) -> None:
    replay = Replay(V2.step("prometheus"))
    with replay.client() as http:
        reading = PrometheusSignal(f"{APP}/prometheus", http).read(dl(clock))
    assert reading.requests is not None and reading.requests >= 5
    assert reading.in_flight == 0.0  # only our own scrape was in flight


def test_actuator_metrics_count_the_business_requests(clock: FakeClock) -> None:
    replay = Replay(V2.step("actuator_metrics"))
    with replay.client() as http:
        reading = ActuatorMetricsSignal(APP, http).read(dl(clock))
    assert reading.requests is not None and reading.requests >= 5
    # Only business URIs are asked for by tag: the scrapes and probes are left out.
    tags = [r.url.params.get("tag", "") for r in replay.seen]
    assert any(t.startswith("uri:/api/work") for t in tags)
    assert not any(t.startswith("uri:/actuator") for t in tags)


@pytest.mark.parametrize("signal", ["prometheus", "actuator"])
def test_a_signal_with_no_time_left_sends_nothing(clock: FakeClock, signal: str) -> None:
    replay = Replay([])
    with replay.client() as http:
        read = (
            PrometheusSignal(f"{APP}/prometheus", http)
            if signal == "prometheus"
            else ActuatorMetricsSignal(APP, http)
        )
        with pytest.raises(DeadlineExceeded):
            read.read(Deadline(clock, clock.now()))
    assert replay.seen == []


def test_a_transport_error_names_the_call_not_the_answer(clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as http,
        pytest.raises(SignalUnavailable, match=r"prometheus: ConnectError$"),
    ):
        PrometheusSignal(f"{APP}/prometheus", http).read(dl(clock))
