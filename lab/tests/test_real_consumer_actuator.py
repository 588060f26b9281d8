"""The real Spring consumer's side of the consumer notification, on real Nacos 2.x: the
nacosdiscovery view lists the hosts (the listener bean), the caches endpoint evicts the load
balancer's list, and /lab/routable tells when an instance was last routable."""

from __future__ import annotations

import time

import httpx
import pytest

from prestop_lab import procs
from prestop_lab.consumer import LB_CACHE, LB_CACHE_MANAGER
from prestop_lab.real import SERVICE, JavaConsumer, NacosServer, registry_args, start_provider

pytestmark = [pytest.mark.slow, pytest.mark.real, pytest.mark.timeout(900)]


def test_view_eviction_and_routable_until(real_nacos2: NacosServer) -> None:
    argv = registry_args(real_nacos2, fetch_s=30, renewal_s=5)
    port = procs.free_port()
    instance = f"127.0.0.1:{port}"
    provider = start_provider(port, argv)
    consumer = JavaConsumer(argv, rate=5, lb_cache_ttl_s=300.0).launch()
    actuator = f"{consumer.url}/actuator"
    try:
        with httpx.Client(timeout=10) as http:

            def view() -> list[int]:
                body = http.get(f"{actuator}/nacosdiscovery").json()
                return [h["port"] for s in body["subscribe"] for h in s["hosts"]]

            assert procs.wait_for(lambda: view() == [port], 60)
            consumer.start()
            assert procs.wait_for(lambda: consumer.routable_until(instance) is not None, 30)
            assert procs.wait_for(lambda: any(r.outcome == "ok" for r in consumer.records()), 30)

            # Nacos drops the instance; the client lets go, the cache (300 s) does not.
            response = http.patch(
                f"{real_nacos2.url}/v1/ns/instance",
                params={
                    "serviceName": SERVICE,
                    "ip": "127.0.0.1",
                    "port": str(port),
                    "enabled": "false",
                    "weight": "1.0",
                    "accessToken": real_nacos2.token(),
                },
            )
            assert response.status_code == 200
            assert procs.wait_for(lambda: view() == [], 10)
            held = consumer.routable_until(instance)
            assert held is not None
            assert procs.wait_for(lambda: (consumer.routable_until(instance) or 0) > held, 5)

            listed = http.get(f"{actuator}/caches").json()
            assert LB_CACHE in listed["cacheManagers"][LB_CACHE_MANAGER]["caches"]
            evicted = http.delete(
                f"{actuator}/caches/{LB_CACHE}", params={"cacheManager": LB_CACHE_MANAGER}
            )
            assert evicted.status_code == 204
            # Read after the eviction answered: no request picks the instance from here on.
            evicted_at = time.monotonic()
            last = consumer.routable_until(instance)

            # Let go: the sampler's value stops moving (one 50 ms sample may still see it).
            def settled() -> bool:
                nonlocal last
                now = consumer.routable_until(instance)
                stable = now == last
                last = now
                return stable

            assert procs.wait_for(settled, 10, interval=0.5)
            ok = [r for r in consumer.records() if r.outcome == "ok" and r.instance == instance]
            # The sampler looks every 50 ms (later on a busy machine), so a request may start
            # between its last sighting and the eviction, but none starts after the eviction
            # (10 ms: the records' millisecond stamps). The sighting itself stopped moving.
            assert ok
            late = [r.start - evicted_at for r in ok if r.start > evicted_at + 0.01]
            assert not late, late
            assert last is not None
    finally:
        consumer.kill()
        provider.kill()
