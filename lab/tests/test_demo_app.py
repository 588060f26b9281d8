"""The demo app and the consumer: what the agent and the lab rely on."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from agent.drain.signals import reading_from_prometheus
from agent.shutdown import port_open
from prestop_lab.consumer import Consumer, ConsumerConfig
from prestop_lab.demo import start_app
from prestop_lab.demo_app import AppConfig, DemoApp
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator
from prestop_lab.procs import free_port, wait_for

# Registrations made by the tests never beat: a starved machine must not see them expire.
NO_EXPIRY = 3600.0


def test_prometheus_counts_business_requests_and_in_flight() -> None:
    """Business requests are counted; a slow one shows as in flight (the scrape excluded)."""
    app = DemoApp(AppConfig(port=0, latency_ms=1))
    app.start()
    try:
        base = f"http://127.0.0.1:{app.port}"
        for _ in range(3):
            httpx.get(f"{base}/work")
        # Long enough that the scrape below comes while it runs, however slow the machine.
        slow = threading.Thread(target=lambda: httpx.get(f"{base}/work?ms=3000"))
        slow.start()
        assert wait_for(lambda: app.metrics.active_business == 1, 30)
        reading = reading_from_prometheus(httpx.get(f"{base}/actuator/prometheus").text)
        assert reading.in_flight == 1
        assert reading.requests == 4  # three done, one arrived
        slow.join()
    finally:
        app.shutdown()


def test_graceful_shutdown_refuses_new_and_finishes_in_flight() -> None:
    """After /actuator/shutdown the port refuses at once and the in-flight request completes."""
    app = DemoApp(AppConfig(port=0, latency_ms=1))
    app.start()
    base = f"http://127.0.0.1:{app.port}"
    result: list[int] = []
    slow = threading.Thread(
        target=lambda: result.append(httpx.get(f"{base}/work?ms=3000").status_code)
    )
    slow.start()
    assert wait_for(lambda: app.metrics.active_business == 1, 30)  # in flight before the stop
    assert httpx.post(f"{base}/actuator/shutdown").json()["message"] == "Shutting down, bye..."
    assert wait_for(lambda: not port_open("127.0.0.1", app.port, 0.2), 30)
    slow.join()
    assert result == [200]
    assert app.wait(30)


@pytest.mark.slow
def test_process_registers_and_deregisters_on_sigterm() -> None:
    """A demo app process registers itself, and deregisters on SIGTERM, exiting 0."""
    with NacosEmulator(EmulatorConfig(push_delay=0.05)) as nacos:
        port = free_port()
        app = start_app(nacos.addr, port, 1)
        try:
            assert wait_for(lambda: len(nacos.admin_view("demo")) == 1, 30)
            app.popen.terminate()
            assert app.wait(30) == 0
            assert nacos.admin_view("demo") == []
            assert "DEMO_APP_STOPPED" in app.lines
        finally:
            app.kill()


def test_ignore_shutdown_keeps_serving() -> None:
    """With --ignore-shutdown the endpoint answers but the app keeps running."""
    app = DemoApp(AppConfig(port=0, ignore_shutdown=True))
    app.start()
    try:
        httpx.post(f"http://127.0.0.1:{app.port}/actuator/shutdown")
        # Without --ignore-shutdown the stop comes 0.5 s after the call. A slow machine only
        # delays it: it could let this check pass wrongly, never fail it; a closed port is the
        # code's doing.
        time.sleep(0.8)
        assert port_open("127.0.0.1", app.port, 5)
    finally:
        app.config.ignore_shutdown = False
        app.shutdown()


def test_consumer_round_robins_and_counts_refused() -> None:
    """The consumer spreads load over both instances and counts errors from a stopped one it still lists."""
    with NacosEmulator(EmulatorConfig(push_delay=0.05, client_timeout=NO_EXPIRY)) as nacos:
        apps = [DemoApp(AppConfig(port=0, latency_ms=1)) for _ in range(2)]
        for app in apps:
            app.start()
            nacos.register("svc", "127.0.0.1", app.port)
        assert wait_for(lambda: len(nacos.consumer_view("svc")) == 2, 30)  # pushed
        consumer = Consumer(
            ConsumerConfig(
                nacos_url=nacos.url, service="svc", rate=50, refresh_interval=60, duration=60
            )
        )
        with consumer:
            assert wait_for(lambda: len(consumer.stats()["per_instance"]) == 2, 30)
            assert consumer.stats()["errors"] == 0
            apps[0].shutdown()  # still in the consumer's list for the next 60 s
            assert wait_for(lambda: refused(consumer) > 5, 30)
        stats = consumer.stats()
        apps[1].shutdown()
    assert len(stats["per_instance"]) == 2
    assert stats["errors_by_kind"].get("connect_refused", 0) > 5


def refused(consumer: Consumer) -> int:
    count: int = consumer.stats()["errors_by_kind"].get("connect_refused", 0)
    return count


def test_lb_cache_delays_list_changes() -> None:
    """A load-balancer cache keeps routing to a dropped instance until its TTL passes."""
    with NacosEmulator(EmulatorConfig(push_delay=0.05, client_timeout=NO_EXPIRY)) as nacos:
        port = free_port()
        cid = nacos.register("svc", "127.0.0.1", port)
        assert wait_for(lambda: len(nacos.consumer_view("svc")) == 1, 30)  # pushed
        consumer = Consumer(
            ConsumerConfig(
                nacos_url=nacos.url,
                service="svc",
                rate=5,
                refresh_interval=0.1,
                lb_cache_ttl=2.0,
                duration=60,
            )
        )
        with consumer:
            assert wait_for(lambda: consumer.records() != [], 30)  # a request loaded the cache
            nacos.deregister(cid)
            assert wait_for(lambda: any(hosts == [] for _, hosts in consumer.list_changes), 30)
            gone_at = next(at for at, hosts in consumer.list_changes if hosts == [])
            # Compared on the consumer's own clock, not at the moment the test looks: discovery
            # saw it go, the LB cache kept routing to it after that.
            until = consumer.routable_until(f"127.0.0.1:{port}")
            assert until is not None
            assert until > gone_at
            assert wait_for(lambda: consumer.routed() == [], 30)
