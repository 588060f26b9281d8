"""The emulated consumer's management port: Spring Boot's caches endpoint, SCA's nacosdiscovery,
the eviction's effect on routing, and when each instance was last routable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from prestop_lab.consumer import (
    ACTUATOR_JSON,
    CAFFEINE_TARGET,
    LB_CACHE,
    LB_CACHE_MANAGER,
    Consumer,
    ConsumerConfig,
)
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator
from prestop_lab.procs import free_port, wait_for

CACHES = "/actuator/caches"
LB = f"{CACHES}/{LB_CACHE}"


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    with NacosEmulator(EmulatorConfig(push_delay=0.05)) as nacos:
        yield nacos


def consumer(nacos: NacosEmulator, **extra: object) -> Consumer:
    config: dict[str, object] = {
        "nacos_url": nacos.url,
        "service": "svc",
        "discovery": "watch",
        "management": True,
        "rate": 20,
        "path": "/nothing",
        "request_timeout": 1.0,
        "duration": 60,
        **extra,
    }
    return Consumer(ConsumerConfig(**config))  # type: ignore[arg-type]


def base(c: Consumer) -> str:
    return f"http://127.0.0.1:{c.management_port}"


def test_caches_endpoint_answers_as_spring_boot(nacos: NacosEmulator) -> None:
    managers = {LB_CACHE_MANAGER: [LB_CACHE, "shared"], "cacheManager": ["shared", "orders"]}
    with consumer(nacos, rate=1, cache_managers=managers) as c, httpx.Client() as http:
        url = base(c)
        listed = http.get(url + CACHES)
        assert listed.status_code == 200
        assert listed.headers["content-type"] == ACTUATOR_JSON
        assert listed.json() == {
            "cacheManagers": {
                LB_CACHE_MANAGER: {
                    "caches": {
                        LB_CACHE: {"target": CAFFEINE_TARGET},
                        "shared": {"target": CAFFEINE_TARGET},
                    }
                },
                "cacheManager": {
                    "caches": {
                        "shared": {"target": CAFFEINE_TARGET},
                        "orders": {"target": CAFFEINE_TARGET},
                    }
                },
            }
        }
        plain = http.get(url + CACHES, headers={"Accept": "application/json"})
        assert plain.headers["content-type"] == "application/json"

        one = http.get(url + LB)
        assert one.status_code == 200
        assert one.json() == {
            "cacheManager": LB_CACHE_MANAGER,
            "target": CAFFEINE_TARGET,
            "name": LB_CACHE,
        }
        assert http.get(url + LB, params={"cacheManager": LB_CACHE_MANAGER}).status_code == 200
        for params in ({"cacheManager": "nosuch"}, {"cacheManager": "cacheManager"}):
            missing = http.get(url + LB, params=params)
            assert (missing.status_code, missing.content) == (404, b"")
        assert http.get(url + f"{CACHES}/nosuch").status_code == 404
        # A name held by two managers needs the manager: 400 without it.
        ambiguous = http.get(url + f"{CACHES}/shared")
        assert (ambiguous.status_code, ambiguous.content) == (400, b"")
        picked = http.get(url + f"{CACHES}/shared", params={"cacheManager": "cacheManager"})
        assert picked.json()["cacheManager"] == "cacheManager"

        assert http.delete(url + f"{CACHES}/shared").status_code == 400
        assert http.delete(url + f"{CACHES}/nosuch").status_code == 404
        assert http.delete(url + LB, params={"cacheManager": "nosuch"}).status_code == 404
        evicted = http.delete(url + LB, params={"cacheManager": LB_CACHE_MANAGER})
        assert (evicted.status_code, evicted.content) == (204, b"")
        assert http.delete(url + CACHES).status_code == 204
        assert len(c.evictions) == 2

        unknown = http.get(url + "/actuator/nosuch")
        assert unknown.status_code == 404
        assert unknown.json()["path"] == "/actuator/nosuch"


def test_nacosdiscovery_lists_the_hosts_the_client_holds(nacos: NacosEmulator) -> None:
    port = free_port()
    nacos.register("svc", "127.0.0.1", port)
    with consumer(nacos, rate=1) as c, httpx.Client() as http:
        assert wait_for(lambda: c.nacos_discovery()["subscribe"][0]["hosts"] != [], 30)
        answer = http.get(base(c) + "/actuator/nacosdiscovery")
        assert answer.headers["content-type"] == ACTUATOR_JSON
        (service,) = answer.json()["subscribe"]
        assert (service["name"], service["groupName"]) == ("svc", "DEFAULT_GROUP")
        (host,) = service["hosts"]
        assert (host["ip"], host["port"], host["enabled"]) == ("127.0.0.1", port, True)


def test_a_consumer_without_the_endpoints_answers_404(nacos: NacosEmulator) -> None:
    with consumer(nacos, rate=1, expose_endpoints=False) as c, httpx.Client() as http:
        for path in (CACHES, LB, "/actuator/nacosdiscovery", "/actuator"):
            answer = http.get(base(c) + path)
            assert answer.status_code == 404, path
            assert answer.json()["status"] == 404
        assert http.delete(base(c) + LB).status_code == 404
        assert c.evictions == []


def test_basic_auth_on_the_management_port(nacos: NacosEmulator) -> None:
    with (
        consumer(nacos, rate=1, management_auth=("ops", "s3cret")) as c,
        httpx.Client() as http,
    ):
        for auth in (None, ("ops", "wrong"), ("other", "s3cret")):
            answer = http.get(base(c) + CACHES, auth=auth)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith("Basic")
        garbage = http.get(base(c) + CACHES, headers={"Authorization": "Basic %%%"})
        assert garbage.status_code == 401
        assert http.get(base(c) + CACHES, auth=("ops", "s3cret")).status_code == 200
        evicted = http.delete(
            base(c) + LB, params={"cacheManager": LB_CACHE_MANAGER}, auth=("ops", "s3cret")
        )
        assert evicted.status_code == 204


def test_eviction_makes_the_next_request_reload_the_discovery_view(
    nacos: NacosEmulator,
) -> None:
    """As Spring Cloud LoadBalancer: the cache holds a dropped instance until it is evicted;
    then requests route by the discovery view, and the next request caches it again."""
    a, b, c_port = free_port(), free_port(), free_port()
    nacos.register("svc", "127.0.0.1", a)
    cid_b = nacos.register("svc", "127.0.0.1", b)
    inst_a, inst_b, inst_c = (f"127.0.0.1:{p}" for p in (a, b, c_port))
    with consumer(nacos, lb_cache_ttl=600.0) as c, httpx.Client() as http:
        assert wait_for(lambda: c.routed() == sorted([inst_a, inst_b]), 30)
        assert wait_for(lambda: len(c.records()) > 0, 30)  # a request has cached the list
        nacos.deregister(cid_b)

        def view() -> list[str]:
            hosts = c.nacos_discovery()["subscribe"][0]["hosts"]
            return [f"{h['ip']}:{h['port']}" for h in hosts]

        assert wait_for(lambda: view() == [inst_a], 30)
        assert inst_b in c.routed()  # the client let go; the load balancer's cache has not
        assert c.routable_until(inst_b) is not None

        evicted = http.delete(base(c) + LB, params={"cacheManager": LB_CACHE_MANAGER})
        assert evicted.status_code == 204
        assert c.routed() == [inst_a]
        evicted_at = c.evictions[-1]
        assert c.routable_until(inst_b) == evicted_at  # it left the list at the eviction

        def after() -> list[str]:
            return [r.instance for r in c.records() if r.start > evicted_at]

        assert wait_for(lambda: len(after()) > 2, 30)  # requests cached the view again
        assert set(after()) == {inst_a}

        nacos.register("svc", "127.0.0.1", c_port)
        assert wait_for(lambda: inst_c in view(), 30)
        assert inst_c not in c.routed()  # cached again until the next eviction or the TTL
        assert c.routable_until(inst_c) is None
        http.delete(base(c) + CACHES)
        assert c.routed() == sorted([inst_a, inst_c])


def test_routable_until_without_a_cache_follows_the_discovery_view(
    nacos: NacosEmulator,
) -> None:
    a, b = free_port(), free_port()
    nacos.register("svc", "127.0.0.1", a)
    cid_b = nacos.register("svc", "127.0.0.1", b)
    inst_a, inst_b = f"127.0.0.1:{a}", f"127.0.0.1:{b}"
    with consumer(nacos, rate=1) as c:
        assert wait_for(lambda: inst_b in c.routed(), 30)
        before = time.monotonic()
        until_b = c.routable_until(inst_b)
        assert until_b is not None and until_b >= before  # still routable: now
        nacos.deregister(cid_b)
        assert wait_for(lambda: inst_b not in c.routed(), 30)
        dropped = next(t for t, hosts in c.list_changes if inst_b not in hosts)
        assert c.routable_until(inst_b) == dropped
        assert c.routable_until("127.0.0.1:1") is None
        still = c.routable_until(inst_a)
    # A stopped consumer routes nothing after its stop: the answer no longer moves.
    stopped = c.routable_until(inst_a)
    assert still is not None and stopped is not None and stopped >= still
    assert c.routable_until(inst_a) == stopped


def test_an_expired_cache_entry_lets_go_when_its_ttl_ends(nacos: NacosEmulator) -> None:
    a, b = free_port(), free_port()
    nacos.register("svc", "127.0.0.1", a)
    cid_b = nacos.register("svc", "127.0.0.1", b)
    inst_b = f"127.0.0.1:{b}"
    with consumer(nacos, rate=50, lb_cache_ttl=0.5) as c:
        assert wait_for(lambda: inst_b in c.routed(), 30)
        nacos.deregister(cid_b)
        assert wait_for(lambda: inst_b not in c.routed(), 30)
        dropped = next(t for t, hosts in c.list_changes if inst_b not in hosts)
        until = c.routable_until(inst_b)
        # It stayed routable after the client dropped it, until an entry loaded before expired.
        assert until is not None and until >= dropped
