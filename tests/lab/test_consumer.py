"""The lab consumer: discovery (poll, watch, v3), round-robin load, and how losses are counted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from agent.lab import procs
from agent.lab.consumer import Consumer, ConsumerConfig
from agent.lab.demo_app import AppConfig, DemoApp
from agent.lab.procs import free_port, wait_for
from tests.lab.test_demo_app import FakeNacos


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[FakeNacos]:
    with FakeNacos() as nacos:
        yield nacos


@pytest.fixture(name="apps")
def fixture_apps() -> Iterator[list[DemoApp]]:
    apps = [DemoApp(AppConfig(port=0, latency_ms=1)) for _ in range(2)]
    for app in apps:
        app.start()
    yield apps
    for app in apps:
        app.shutdown()


def test_round_robin_then_refused_from_a_stopped_listed_instance(
    nacos: FakeNacos, apps: list[DemoApp]
) -> None:
    """Load alternates over both apps without errors; a stopped app still listed is refused."""
    for app in apps:
        nacos.add("svc", "127.0.0.1", app.port)
    config = ConsumerConfig(nacos.url, "svc", rate=50, refresh_interval=60, duration=10)
    with Consumer(config) as consumer:
        time.sleep(1)
        before = consumer.stats()
        apps[0].shutdown()  # still in the consumer's list for the next 60 s
        time.sleep(0.6)
    after = consumer.stats()
    assert before["errors"] == 0
    assert before["total"] >= 40
    counts = sorted(before["per_instance"].values())
    assert counts[1] - counts[0] <= 1
    refused = after["errors_by_kind"].get("connect_refused", 0)
    assert refused >= 10
    stopped = f"127.0.0.1:{apps[0].port}"
    assert all(r.instance == stopped for r in consumer.records() if r.outcome != "ok")
    assert after["ok"] + after["errors"] == after["total"]


def test_lb_cache_delays_pick_up_of_a_list_change(nacos: FakeNacos) -> None:
    """With lb_cache_ttl the routed list keeps a dropped instance until the TTL has passed."""
    kept = nacos.add("svc", "127.0.0.1", free_port())
    dropped = nacos.add("svc", "127.0.0.1", free_port())
    assert kept != dropped
    config = ConsumerConfig(
        nacos.url, "svc", rate=20, refresh_interval=0.1, lb_cache_ttl=1.5, duration=5
    )
    with Consumer(config) as consumer:
        assert len(consumer.routed()) == 2
        nacos.remove(dropped)
        removed = time.monotonic()
        assert wait_for(lambda: len(consumer.list_changes[-1][1]) == 1, 1)
        assert len(consumer.routed()) == 2  # discovery saw it go; the LB cache has not
        assert wait_for(lambda: len(consumer.routed()) == 1, 2, interval=0.02)
        assert time.monotonic() - removed >= 0.5


def test_without_lb_cache_the_routed_list_follows_discovery(nacos: FakeNacos) -> None:
    """Without an LB cache a list change is routed on the next poll."""
    dropped = nacos.add("svc", "127.0.0.1", free_port())
    nacos.add("svc", "127.0.0.1", free_port())
    config = ConsumerConfig(nacos.url, "svc", rate=20, refresh_interval=0.1, duration=5)
    with Consumer(config) as consumer:
        nacos.remove(dropped)
        assert wait_for(lambda: len(consumer.routed()) == 1, 0.5, interval=0.02)


@pytest.mark.parametrize(("api", "discovery"), [("v1", "watch"), ("v3", "poll")])
def test_discovery_flavours_see_new_instances(nacos: FakeNacos, api: str, discovery: str) -> None:
    """The watch long-poll and the v3 list both deliver a newly registered instance."""
    config = ConsumerConfig(
        nacos.url,
        "svc",
        api=api,  # type: ignore[arg-type]
        discovery=discovery,  # type: ignore[arg-type]
        refresh_interval=0.1 if discovery == "poll" else 60,
        rate=5,
        duration=5,
    )
    with Consumer(config) as consumer:
        assert consumer.routed() == []
        port = free_port()
        nacos.add("svc", "127.0.0.1", port)
        nacos.add("svc", "127.0.0.1", free_port(), enabled=False)
        nacos.add("svc", "127.0.0.1", free_port(), healthy=False)
        assert wait_for(lambda: consumer.routed() == [f"127.0.0.1:{port}"], 1)
    assert consumer.stats()["discovery_errors"] == 0


def test_registry_failures_keep_the_last_list(nacos: FakeNacos, apps: list[DemoApp]) -> None:
    """When the registry fails, the consumer keeps routing to its last list and counts failures."""
    nacos.add("svc", "127.0.0.1", apps[0].port)
    config = ConsumerConfig(nacos.url, "svc", rate=20, refresh_interval=0.1, duration=5)
    with Consumer(config) as consumer:
        nacos.fail_lists = True
        time.sleep(0.5)
        nacos.close()
        time.sleep(0.3)
        assert consumer.routed() == [f"127.0.0.1:{apps[0].port}"]
    stats = consumer.stats()
    assert stats["discovery_errors"] >= 3
    assert stats["errors"] == 0
    assert stats["ok"] >= 10


def test_error_kinds(nacos: FakeNacos) -> None:
    """5xx, a connection closed unanswered, a timeout and an empty list each get their kind."""
    nacos.add("svc", "127.0.0.1", nacos.port)
    kinds = {}
    for path, timeout in (("/boom", 5.0), ("/drop", 5.0), ("/slow", 0.2), ("/nacos/x", 5.0)):
        config = ConsumerConfig(
            nacos.url, "svc", path=path, request_timeout=timeout, rate=50, max_requests=2
        )
        with Consumer(config) as consumer:
            assert consumer.wait(2)
        kinds[path] = consumer.stats()["errors_by_kind"]
    with Consumer(ConsumerConfig(nacos.url, "nobody", rate=50, max_requests=2)) as consumer:
        assert consumer.wait(2)
    assert kinds == {
        "/boom": {"http_5xx": 2},
        "/drop": {"remote_closed": 2},
        "/slow": {"timeout": 2},
        "/nacos/x": {"http_other": 2},
    }
    assert consumer.stats()["errors_by_kind"] == {"no_instance": 2}


def test_bounds_on_requests_and_records(nacos: FakeNacos, apps: list[DemoApp]) -> None:
    """max_requests stops the load by itself; records are capped while stats stay exact."""
    nacos.add("svc", "127.0.0.1", apps[0].port)
    config = ConsumerConfig(nacos.url, "svc", rate=100, max_requests=7, max_records=3)
    with Consumer(config) as consumer:
        assert consumer.wait(2)
    assert consumer.stats()["total"] == 7
    assert consumer.stats()["ok"] == 7
    assert len(consumer.records()) == 3


def test_cli_prints_final_stats(nacos: FakeNacos, apps: list[DemoApp]) -> None:
    """The CLI runs for --duration and prints the final stats as one JSON line."""
    nacos.add("svc", "127.0.0.1", apps[0].port)
    proc = procs.start(
        "consumer",
        procs.python_module(
            "agent.lab.consumer",
            "--nacos-url",
            nacos.url,
            "--service",
            "svc",
            "--rate",
            "20",
            "--duration",
            "1",
        ),
    )
    try:
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    stats = json.loads(proc.lines[-1])
    assert 10 <= stats["total"] <= 30
    assert stats["ok"] == stats["total"]
    assert stats["per_instance"] == {f"127.0.0.1:{apps[0].port}": stats["total"]}
