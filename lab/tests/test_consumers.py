"""Telling real consumer processes: subscribers from the Nacos emulator, each one's actuator.

Each lab consumer keeps a 60 s load-balancer cache on top of its pushed view, so without the
eviction it would route to the instance for a minute after the take-out.
"""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from agent.config import NacosSettings, ServerAddress
from agent.consumers import ConsumerSettings, ConsumerTracker
from agent.deadline import Deadline, SystemClock
from agent.registry.nacos import NacosHttp, NacosRegistry
from prestop_lab.consumer import Consumer, ConsumerConfig
from prestop_lab.nacos_emulator import EmulatorConfig, Flavour, NacosEmulator
from prestop_lab.procs import wait_for

US = "127.0.0.1:9999"


def _consumer(nacos: NacosEmulator, flavour: Flavour, **kw: object) -> Consumer:
    return Consumer(
        ConsumerConfig(
            nacos_url=nacos.url,
            service="orders",
            api="v3" if flavour == "3.x" else "v1",
            discovery="watch",
            lb_cache_ttl=60.0,
            management=True,
            rate=2,
            path="/nothing",
            duration=120,
            **kw,  # type: ignore[arg-type]
        )
    )


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_every_consumer_is_told_and_lets_go(flavour: Flavour) -> None:
    # client_timeout: the test's registrations never beat, and a starved machine must not see
    # them expire.
    config = EmulatorConfig(
        flavour=flavour, push_delay=0.05, admin_auth_enabled=False, client_timeout=3600.0
    )
    with NacosEmulator(config) as nacos, httpx.Client() as http:
        nacos.register("orders", "127.0.0.1", 9999, weight=2.0)
        nacos.register("orders", "127.0.0.1", 9998, weight=1.0)
        assert wait_for(lambda: len(nacos.consumer_view("orders")) == 2, 30)  # pushed
        consumers = [_consumer(nacos, flavour) for _ in range(2)]
        for c in consumers:
            c.start()
        try:
            settings = NacosSettings(
                (ServerAddress(f"{nacos.url}/nacos"),),
                "public",
                "DEFAULT_GROUP",
                "DEFAULT",
                "orders",
                "127.0.0.1",
                9999,
            )
            registry = NacosRegistry(settings, NacosHttp(settings, http, SystemClock()))
            deadline = Deadline.after(SystemClock(), 120)
            assert wait_for(lambda: len(registry.subscribers(deadline) or []) == 2, 30)
            assert wait_for(lambda: all(US in c.routed() for c in consumers), 30)
            tracker = ConsumerTracker(
                source=registry,
                settings=ConsumerSettings(actuator="http://{ip}:{port}/actuator"),
                http=http,
                clock=SystemClock(),
                ip="127.0.0.1",
                port=9999,
                service="orders",
            )
            registry.take_out(deadline)

            def knows() -> bool:
                tracker.poll(deadline)
                return tracker.knowledge_at is not None

            with capture_logs() as logs:
                assert wait_for(knows, 30)
            # The 60 s caches were evicted: the next request already routes without us.
            assert wait_for(lambda: all(US not in c.routed() for c in consumers), 30)
            summary = tracker.summary()
            assert len(summary["let_go"]) == 2 and summary["unconfirmed"] == {}
            assert sum(1 for e in logs if e["event"] == "consumer_let_go") == 2
        finally:
            for c in consumers:
                c.stop()
