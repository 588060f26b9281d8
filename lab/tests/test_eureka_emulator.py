"""The Eureka emulator against docs/eureka.md.

Most tests speak plain HTTP with hand-written requests and fixtures in the doc's shapes; one
drives it with an independent client (`py-eureka-client` from PyPI, which reads XML), so that
the emulator is not only checked by the code that uses it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from prestop_lab import procs
from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

JSON = {"Accept": "application/json"}
ID = "orders-7d9c-x2k4q:orders:8080"


def body(status: str = "UP", dirty: int = 1000, **extra: object) -> dict[str, object]:
    """A Spring Boot registration as docs/eureka.md#instance-json shows it (before the server decorates it)."""
    instance: dict[str, object] = {
        "instanceId": ID,
        "hostName": "orders-7d9c-x2k4q",
        "app": "ORDERS",
        "ipAddr": "10.42.0.17",
        "status": status,
        "overriddenStatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"management.port": "8080"},
        "vipAddress": "orders",
        "secureVipAddress": "orders",
        "lastDirtyTimestamp": str(dirty),
    }
    instance.update(extra)
    return {"instance": instance}


def stored_status(e: EurekaEmulator) -> object:
    """The stored status of the instance registered by `register`."""
    instance = e.instance("ORDERS", ID)
    assert instance is not None
    return instance["status"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # on a 30 s boundary

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def fixture_clock() -> Clock:
    return Clock()


@pytest.fixture(name="eureka")
def fixture_eureka(clock: Clock) -> Iterator[EurekaEmulator]:
    with EurekaEmulator(EurekaConfig(), clock=clock) as e:
        yield e


@pytest.fixture(name="http")
def fixture_http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as client:
        yield client


def register(
    http: httpx.Client, e: EurekaEmulator, status: str = "UP", dirty: int = 1000, **extra: object
) -> httpx.Response:
    return http.post(f"{e.url}apps/orders", json=body(status, dirty, **extra))


# --- routing, names, formats ---


def test_register_204_and_both_base_paths(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """POST answers 204; /eureka/ and /eureka/v2/ serve the same registry; ids keep their ':'."""
    assert register(http, eureka).status_code == 204
    for base in (eureka.url, eureka.url + "v2/"):
        r = http.get(f"{base}apps/ORDERS/{ID}", headers=JSON)
        assert r.status_code == 200
        assert r.json()["instance"]["instanceId"] == ID
    assert http.get(f"{eureka.url}apps/orders", headers=JSON).status_code == 200  # upper-cased
    assert http.get(f"{eureka.url}apps/", headers=JSON).status_code == 200  # trailing slash


def test_json_shapes(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """Arrays for one element, "$" number, "@enabled" string, @Auto fields as strings."""
    register(http, eureka, metadata={})
    apps = http.get(f"{eureka.url}apps", headers=JSON).json()["applications"]
    assert apps["versions__delta"] == "1"
    assert apps["apps__hashcode"] == "UP_1_"
    assert isinstance(apps["application"], list)
    instance = apps["application"][0]["instance"][0]
    assert instance["port"] == {"$": 8080, "@enabled": "true"}
    assert instance["metadata"] == {"@class": "java.util.Collections$EmptyMap"}
    for key in ("isCoordinatingDiscoveryServer", "lastUpdatedTimestamp", "lastDirtyTimestamp"):
        assert isinstance(instance[key], str)
    assert instance["overriddenStatus"] == "UNKNOWN"
    assert instance["actionType"] == "ADDED"


def test_xml_unless_json_is_asked_for(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """No Accept, */* or text/html: XML, with <overriddenstatus> and port attributes."""
    register(http, eureka)
    for accept in (None, "*/*", "text/html"):
        headers = {"Accept": accept} if accept else {}
        r = http.get(f"{eureka.url}apps", headers=headers)
        assert r.text.startswith("<applications>"), accept
    live = http.get(f"{eureka.url}apps/ORDERS/{ID}").text
    assert '<port enabled="true">8080</port>' in live
    assert "<overriddenstatus>UNKNOWN</overriddenstatus>" in live


def test_legacy_shapes(clock: Clock, http: httpx.Client) -> None:
    """Switches for XStream-era single objects and the lower-case override key."""
    config = EurekaConfig(legacy_single_objects=True, legacy_lowercase_override=True)
    with EurekaEmulator(config, clock=clock) as e:
        register(http, e)
        apps = http.get(f"{e.url}apps", headers=JSON).json()["applications"]
        assert isinstance(apps["application"], dict)
        assert isinstance(apps["application"]["instance"], dict)
        assert "overriddenstatus" in apps["application"]["instance"]


def test_gzip_only_for_apps_and_delta(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """Accept-Encoding: gzip compresses apps and apps/delta, not apps/{APP}."""
    register(http, eureka)
    headers = {**JSON, "Accept-Encoding": "gzip"}
    with http.stream("GET", f"{eureka.url}apps", headers=headers) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(b"".join(r.iter_raw())))["applications"]
    r = http.get(f"{eureka.url}apps/ORDERS", headers=headers)
    assert "Content-Encoding" not in r.headers


# --- status codes ---


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"instanceId": "", "hostName": ""}, "Missing instanceId"),
        ({"ipAddr": ""}, "Missing ip address"),
        ({"app": "PAYMENTS"}, "Mismatched appName, expecting ORDERS but was PAYMENTS"),
        ({"dataCenterInfo": {"name": ""}}, "Missing dataCenterInfo Name"),
    ],
)
def test_register_validation(
    eureka: EurekaEmulator, http: httpx.Client, change: dict[str, Any], message: str
) -> None:
    """Each validation failure is a 400 with the server's text."""
    r = http.post(f"{eureka.url}apps/ORDERS", json=body(**change))
    assert (r.status_code, r.text) == (400, message)


def test_register_content_types(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """JSON and XML bodies register; anything else is 415."""
    r = http.post(f"{eureka.url}apps/ORDERS", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    xml = (
        "<instance><instanceId>x:orders:1</instanceId><hostName>x</hostName><app>ORDERS</app>"
        "<ipAddr>10.0.0.1</ipAddr><status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus>"
        '<port enabled="true">1</port><dataCenterInfo class="x"><name>MyOwn</name>'
        "</dataCenterInfo></instance>"
    )
    r = http.post(
        f"{eureka.url}apps/ORDERS", content=xml, headers={"Content-Type": "application/xml"}
    )
    assert r.status_code == 204
    assert eureka.instance("ORDERS", "x:orders:1") is not None


def test_newer_stored_registration_wins(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """A registration older than the stored lastDirtyTimestamp is ignored (still 204)."""
    register(http, eureka, dirty=2000, ipAddr="10.0.0.2")
    assert register(http, eureka, dirty=1000, ipAddr="10.0.0.1").status_code == 204
    stored = eureka.instance("ORDERS", ID)
    assert stored is not None and stored["ipAddr"] == "10.0.0.2"


def test_heartbeat_codes(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """404 unknown; 404 when the client's lastDirtyTimestamp is newer; 200 otherwise."""
    hb = f"{eureka.url}apps/ORDERS/{ID}"
    assert http.put(hb, params={"status": "UP"}).status_code == 404
    register(http, eureka, dirty=1000)
    assert http.put(hb, params={"status": "DOWN", "lastDirtyTimestamp": "1000"}).status_code == 200
    stored = eureka.instance("ORDERS", ID)
    assert stored is not None and stored["status"] == "UP"  # `status` is ignored
    assert http.put(hb, params={"lastDirtyTimestamp": "5000"}).status_code == 404


def test_status_update_codes_and_no_op(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """404 unknown; 500 for a missing or lower-case value; same status: no override stored."""
    url = f"{eureka.url}apps/ORDERS/{ID}/status"
    assert http.put(url, params={"value": "OUT_OF_SERVICE"}).status_code == 404
    register(http, eureka)
    assert http.put(url).status_code == 500
    assert http.put(url, params={"value": "out_of_service"}).status_code == 500
    assert http.put(url, params={"value": "UP"}).status_code == 200
    assert eureka.override(ID) is None  # value equal to the stored status: nothing recorded
    assert http.put(url, params={"value": "OUT_OF_SERVICE"}).status_code == 200
    assert eureka.override(ID) == "OUT_OF_SERVICE"
    live = http.get(f"{eureka.url}apps/ORDERS/{ID}", headers=JSON).json()["instance"]
    assert (live["status"], live["overriddenStatus"]) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    assert live["actionType"] == "MODIFIED"


def test_override_survives_heartbeats_and_up_registrations(
    eureka: EurekaEmulator, http: httpx.Client
) -> None:
    """Rule 2: the override wins over heartbeats and an UP re-registration; DOWN wins (rule 1)."""
    register(http, eureka)
    http.put(f"{eureka.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
    assert http.put(f"{eureka.url}apps/ORDERS/{ID}").status_code == 200
    register(http, eureka, status="UP", dirty=2000)
    assert stored_status(eureka) == "OUT_OF_SERVICE"
    register(http, eureka, status="DOWN", dirty=3000)
    assert stored_status(eureka) == "DOWN"
    assert eureka.override(ID) == "OUT_OF_SERVICE"  # kept in the map


def test_delete_override_defaults_to_unknown(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """DELETE without value: UNKNOWN, and the next heartbeat is 404 (re-register required)."""
    register(http, eureka)
    url = f"{eureka.url}apps/ORDERS/{ID}/status"
    assert http.delete(url).status_code == 200  # no override: 200, nothing changes
    assert stored_status(eureka) == "UP"
    http.put(url, params={"value": "OUT_OF_SERVICE"})
    assert http.delete(url).status_code == 200
    assert stored_status(eureka) == "UNKNOWN"
    assert eureka.override(ID) is None
    assert http.put(f"{eureka.url}apps/ORDERS/{ID}").status_code == 404


def test_rule_three_keeps_out_of_service_without_override(
    eureka: EurekaEmulator, http: httpx.Client
) -> None:
    """A client that registered OUT_OF_SERVICE stays so when it re-registers UP (rule 3)."""
    register(http, eureka, status="OUT_OF_SERVICE", dirty=1000)
    register(http, eureka, status="UP", dirty=2000)
    assert stored_status(eureka) == "OUT_OF_SERVICE"


def test_cancel_codes_and_override_removal(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """Cancel: 200 then 404; the override goes with it; GET apps/{APP} then 404."""
    register(http, eureka)
    http.put(f"{eureka.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
    assert http.delete(f"{eureka.url}apps/ORDERS/{ID}").status_code == 200
    assert eureka.override(ID) is None
    assert http.delete(f"{eureka.url}apps/ORDERS/{ID}").status_code == 404
    assert http.get(f"{eureka.url}apps/ORDERS", headers=JSON).status_code == 404
    empty = http.get(f"{eureka.url}apps", headers=JSON)
    assert empty.status_code == 200
    assert empty.json()["applications"]["apps__hashcode"] == ""


def test_metadata_put_is_a_re_registration(eureka: EurekaEmulator, http: httpx.Client) -> None:
    """Every query parameter becomes metadata; the action is ADDED."""
    register(http, eureka)
    r = http.put(f"{eureka.url}apps/ORDERS/{ID}/metadata", params={"zone": "a"})
    assert r.status_code == 200
    stored = eureka.instance("ORDERS", ID)
    assert stored is not None
    assert stored["metadata"]["zone"] == "a"
    assert stored["actionType"] == "ADDED"


# --- time: caches, delta, leases ---


def test_read_only_cache_lags_until_the_tick(
    clock: Clock, eureka: EurekaEmulator, http: httpx.Client
) -> None:
    """A hot key stays stale until the next 30 s tick; the live GET sees the change at once."""
    register(http, eureka)
    delta = f"{eureka.url}apps/delta"
    first = http.get(delta, headers=JSON).json()["applications"]
    assert first["application"][0]["instance"][0]["status"] == "UP"
    http.put(f"{eureka.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
    live = http.get(f"{eureka.url}apps/ORDERS/{ID}", headers=JSON).json()["instance"]
    assert live["status"] == "OUT_OF_SERVICE"
    clock.now += 29
    eureka.tick()
    stale = http.get(delta, headers=JSON).json()["applications"]
    assert all(i["status"] == "UP" for a in stale["application"] for i in a["instance"])
    clock.now += 1
    eureka.tick()
    fresh = http.get(delta, headers=JSON).json()["applications"]
    statuses = {i["status"] for a in fresh["application"] for i in a["instance"]}
    assert statuses == {"OUT_OF_SERVICE"}  # every copy shows the current state
    assert int(fresh["versions__delta"]) > int(first["versions__delta"])
    assert fresh["apps__hashcode"] == "OUT_OF_SERVICE_1_"


def test_first_read_of_a_key_is_fresh(clock: Clock, http: httpx.Client) -> None:
    """A key never read before is loaded from the read-write cache; the switch turns it off."""
    with EurekaEmulator(EurekaConfig(), clock=clock) as e:
        register(http, e)
        http.put(f"{e.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
        app = http.get(f"{e.url}apps/ORDERS", headers=JSON).json()["application"]
        assert app["instance"][0]["status"] == "OUT_OF_SERVICE"
    with EurekaEmulator(EurekaConfig(read_only_cache=False), clock=clock) as e:
        register(http, e)
        http.get(f"{e.url}apps/delta", headers=JSON)
        http.put(f"{e.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
        delta = http.get(f"{e.url}apps/delta", headers=JSON).json()["applications"]
        assert delta["apps__hashcode"] == "OUT_OF_SERVICE_1_"


def test_delta_retention(clock: Clock, eureka: EurekaEmulator, http: httpx.Client) -> None:
    """Changes leave the delta queue 180 s later (pruned every 30 s)."""
    register(http, eureka)
    clock.now += 211
    eureka.tick()
    clock.now += 30
    eureka.tick()
    delta = http.get(f"{eureka.url}apps/delta", headers=JSON).json()["applications"]
    assert delta["application"] == []


def test_lease_expiry_and_eviction(clock: Clock, http: httpx.Client) -> None:
    """Without self-preservation: a lease expires 2x duration after its last renewal."""
    with EurekaEmulator(EurekaConfig(self_preservation=False), clock=clock) as e:
        register(http, e)
        http.put(f"{e.url}apps/ORDERS/{ID}")  # renew: lastUpdate = now + 90
        clock.now += 179
        assert http.get(f"{e.url}apps/ORDERS/{ID}", headers=JSON).status_code == 200
        clock.now += 2
        assert http.get(f"{e.url}apps/ORDERS/{ID}", headers=JSON).status_code == 404
        assert http.put(f"{e.url}apps/ORDERS/{ID}/status", params={"value": "UP"}).status_code == (
            404
        )
        clock.now += 60
        e.tick()
        assert e.instance("ORDERS", ID) is None


def test_self_preservation_keeps_small_registries(clock: Clock, http: httpx.Client) -> None:
    """With 5 or fewer clients, renewals never exceed the threshold: nothing expires."""
    with EurekaEmulator(EurekaConfig(), clock=clock) as e:
        register(http, e)
        clock.now += 400
        e.tick()
        assert http.get(f"{e.url}apps/ORDERS/{ID}", headers=JSON).status_code == 200


# --- access control, faults, peers ---


def test_basic_auth(clock: Clock, http: httpx.Client) -> None:
    """No or wrong credentials: 401 with a Basic challenge; right ones: served."""
    with EurekaEmulator(EurekaConfig(users={"eu": "pw"}), clock=clock) as e:
        r = http.get(f"{e.url}apps", headers=JSON)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Realm"'
        assert http.get(f"{e.url}apps", headers=JSON, auth=("eu", "bad")).status_code == 401
        assert http.get(f"{e.url}apps", headers=JSON, auth=("eu", "pw")).status_code == 200
        assert all(r.headers.get("authorization") in (None, "<redacted>") for r in e.requests)


def test_csrf_protected_writes(clock: Clock, http: httpx.Client) -> None:
    """Spring Security with CSRF on: writes 403 with Spring's JSON error body, reads work."""
    with EurekaEmulator(EurekaConfig(csrf_protected_writes=True), clock=clock) as e:
        r = register(http, e)
        assert r.status_code == 403
        assert r.json()["error"] == "Forbidden"
        assert http.get(f"{e.url}apps", headers=JSON).status_code == 200


def test_fault_injection(clock: Clock, http: httpx.Client) -> None:
    """fail_status answers every request with that status."""
    with EurekaEmulator(EurekaConfig(fail_status=503), clock=clock) as e:
        assert http.get(f"{e.url}apps", headers=JSON).status_code == 503


def test_peers_replicate_writes(http: httpx.Client) -> None:
    """A write on A reaches B after the replication delay, marked as replicated."""
    config = EurekaConfig(read_only_cache=False, replication_delay=0.05)
    with EurekaEmulator(config) as a, EurekaEmulator(EurekaConfig(**config.__dict__)) as b:
        a.add_peer(b)
        register(http, a)
        assert procs.wait_for(lambda: b.instance("ORDERS", ID) is not None, 30)
        http.put(f"{a.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
        assert procs.wait_for(lambda: b.override(ID) == "OUT_OF_SERVICE", 30)
        assert any(r.headers.get("x-netflix-discovery-replication") == "true" for r in b.requests)
        assert b.peers == []  # B does not send it back


# --- an independent client ---


def test_py_eureka_client_registers_heartbeats_and_reads_xml(http: httpx.Client) -> None:
    """py-eureka-client (PyPI) registers, heartbeats, reads the XML registry and sets status."""
    from py_eureka_client import eureka_basic as eb

    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as e:
        instance = eb.Instance(
            instanceId="py-1:pyapp:9090",
            hostName="py-1",
            app="PYAPP",
            ipAddr="10.0.0.9",
            port=eb.PortWrapper(port=9090, enabled=True),
            vipAddress="pyapp",
            secureVipAddress="pyapp",
            status="UP",
            overriddenstatus="UNKNOWN",
            dataCenterInfo=eb.DataCenterInfo(),
            lastDirtyTimestamp=int(time.time() * 1000),
        )

        async def scenario() -> tuple[Any, Any, Any]:  # py-eureka-client is untyped
            await eb.register(e.url, instance)
            await eb.send_heartbeat(e.url, "PYAPP", "py-1:pyapp:9090", instance.lastDirtyTimestamp)
            apps = await eb.get_applications(e.url)
            await eb.status_update(
                e.url, "PYAPP", "py-1:pyapp:9090", instance.lastDirtyTimestamp, "OUT_OF_SERVICE"
            )
            one = await eb.get_app_instance(e.url, "PYAPP", "py-1:pyapp:9090")
            return apps, one, await eb.get_delta(e.url)

        apps, one, delta = asyncio.run(scenario())
        app = apps.get_application("PYAPP")
        assert [i.instanceId for i in app.instances] == ["py-1:pyapp:9090"]
        assert app.instances[0].port.port == 9090
        assert one.status == "OUT_OF_SERVICE"
        assert one.overriddenstatus == "OUT_OF_SERVICE"
        assert delta.get_application("PYAPP").instances
        # Our own reading of the same record agrees.
        live = http.get(f"{e.url}apps/PYAPP/py-1:pyapp:9090", headers=JSON).json()["instance"]
        assert live["status"] == "OUT_OF_SERVICE"


def test_access_gate_refuses_registry_reads(clock: Clock, http: httpx.Client) -> None:
    """The plain-Netflix start-up gate: 403 on apps, apps/delta and apps/{APP}; live reads work."""
    with EurekaEmulator(EurekaConfig(access_gate=True), clock=clock) as e:
        register(http, e)
        for path in ("apps", "apps/delta", "apps/ORDERS"):
            assert http.get(f"{e.url}{path}", headers=JSON).status_code == 403
        assert http.get(f"{e.url}apps/ORDERS/{ID}", headers=JSON).status_code == 200


def test_lost_replication_leaves_the_peer_behind(http: httpx.Client) -> None:
    """With every replication call lost, a status change stays on the server that took it:
    why the agent writes to every server itself."""
    config = EurekaConfig(read_only_cache=False, replication_delay=0.01, replication_loss=1.0)
    with EurekaEmulator(config) as a, EurekaEmulator(EurekaConfig(read_only_cache=False)) as b:
        a.add_peer(b)
        for server in (a, b):
            register(http, server)
        http.put(f"{a.url}apps/ORDERS/{ID}/status", params={"value": "OUT_OF_SERVICE"})
        # Both of A's replications (the registration, the status) were sent and lost: B's
        # state below is final, however slow the machine.
        assert procs.wait_for(lambda: a.replications_lost >= 2, 30)
        assert a.override(ID) == "OUT_OF_SERVICE"
        assert b.override(ID) is None
