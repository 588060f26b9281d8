"""Polling the consumers: subscribers from Nacos, each one's /actuator/nacosdiscovery."""

from __future__ import annotations

import time

import httpx
import pytest
from structlog.testing import capture_logs

from agent.config import NacosSettings, ServerAddress
from agent.consumers import ConsumerView
from agent.deadline import Deadline, SystemClock
from agent.registry.nacos import NacosHttp, NacosRegistry
from prestop_lab.consumer import Consumer, ConsumerConfig
from prestop_lab.nacos_emulator import EmulatorConfig, Flavour, NacosEmulator
from prestop_lab.procs import wait_for


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_consumer_let_go_is_logged(flavour: Flavour) -> None:
    """Each subscriber is found through Nacos, and its letting go of us is logged."""
    config = EmulatorConfig(flavour=flavour, push_delay=0.05, admin_auth_enabled=False)
    with NacosEmulator(config) as nacos, httpx.Client() as http:
        nacos.register("orders", "127.0.0.1", 9999, weight=2.0)
        time.sleep(0.1)
        consumers = [
            Consumer(
                ConsumerConfig(
                    nacos_url=nacos.url,
                    service="orders",
                    api="v3" if flavour == "3.x" else "v1",
                    management=True,
                    refresh_interval=0.2,
                    rate=1,
                    path="/nothing",
                    duration=10,
                )
            )
            for _ in range(2)
        ]
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
            deadline = Deadline.after(SystemClock(), 10)
            assert wait_for(lambda: len(registry.subscribers(deadline)) == 2, 3)
            view = ConsumerView(
                registry, http, SystemClock(), "127.0.0.1", 9999, "orders", interval=0.1
            )
            view.poll(deadline)
            assert view.summary()["still_holding"] != []
            registry.take_out(deadline)

            def all_let_go() -> bool:
                view.poll(deadline)
                holding: list[str] = view.summary()["still_holding"]
                return holding == []

            with capture_logs() as logs:
                assert wait_for(all_let_go, 3)
            summary = view.summary()
            assert len(summary["let_go"]) == 2
            assert sum(1 for e in logs if e["event"] == "consumer_let_go") == 2
        finally:
            for c in consumers:
                c.stop()
