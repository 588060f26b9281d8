"""The emulator's Nacos behaviours, over real HTTP (it is our stand-in, so it is tested too)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict

import httpx
import pytest

from prestop_lab.nacos_emulator import EmulatorConfig, Flavour, NacosEmulator
from prestop_lab.procs import wait_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

IDS = {"serviceName": "orders", "groupName": "DEFAULT_GROUP", "ip": "10.0.0.5", "port": "8080"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Options(TypedDict, total=False):
    """The emulator settings these tests vary."""

    auth_enabled: bool
    admin_auth_enabled: bool
    users: dict[str, str]
    metadata_expiry: float
    cleaner_interval: float
    client_timeout: float


def start(
    flavour: Flavour = "2.x", clock: Clock | None = None, **kw: Unpack[Options]
) -> NacosEmulator:
    # The tests' registrations never beat: a starved machine must not see them expire.
    kw.setdefault("client_timeout", 3600.0)
    config = EmulatorConfig(flavour=flavour, push_delay=0.05, **kw)
    emulator = NacosEmulator(config, clock=clock or time.monotonic)
    emulator.start()
    return emulator


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    # Nobody beats for the registered clients: on a loaded machine the default 3 s of real time
    # went by mid-test and the instance vanished. The disconnect has its own test.
    emulator = start(client_timeout=1e9)
    yield emulator
    emulator.stop()


def call(nacos: NacosEmulator, method: str, path: str, **params: str | int) -> httpx.Response:
    return httpx.request(method, f"{nacos.url}/nacos{path}", params=params, timeout=5)


def test_patch_keeps_metadata_and_a_first_patch_resets_weight(nacos: NacosEmulator) -> None:
    """PATCH keeps metadata; a first PATCH without weight starts from weight 1.0 (InstanceMetadata)."""
    nacos.register("orders", "10.0.0.5", 8080, weight=3.0, metadata={"a": "1"})
    assert call(nacos, "PATCH", "/v1/ns/instance", **IDS, enabled="false").text == "ok"
    (inst,) = nacos.admin_view("orders")
    assert (inst["enabled"], inst["weight"], inst["metadata"]) == (False, 1.0, {"a": "1"})


def test_put_replaces_the_record(nacos: NacosEmulator) -> None:
    """PUT without weight sets weight 1.0 and replaces earlier ops metadata."""
    nacos.register("orders", "10.0.0.5", 8080, weight=3.0)
    call(nacos, "PUT", "/v1/ns/instance", **IDS, weight="2", metadata="x=1")
    call(nacos, "PUT", "/v1/ns/instance", **IDS, enabled="false")
    rec = nacos.ops_record("orders", "10.0.0.5", 8080)
    assert rec == {"enabled": False, "weight": 1.0, "extendData": {}, "expired_at": None}


def test_put_on_unknown_ip_stores_an_orphan(nacos: NacosEmulator) -> None:
    """PUT for an unregistered ip:port of a known service answers ok and stores a record."""
    nacos.register("orders", "10.0.0.9", 8080)
    assert call(nacos, "PUT", "/v1/ns/instance", **IDS, enabled="false").text == "ok"
    assert nacos.ops_record("orders", "10.0.0.5", 8080) is not None
    r = call(nacos, "PUT", "/v1/ns/instance", **{**IDS, "serviceName": "nope"})
    assert r.status_code == 400
    assert r.text.startswith("service not found")


def test_patch_and_detail_on_unknown_ip(nacos: NacosEmulator) -> None:
    """PATCH and GET detail for an unknown ip:port answer 404 'no matched ip found!'."""
    nacos.register("orders", "10.0.0.9", 8080)
    assert wait_for(lambda: len(nacos.consumer_view("orders")) == 1, 10)  # pushed
    for method in ("PATCH", "GET"):
        r = call(nacos, method, "/v1/ns/instance", **IDS, enabled="false")
        assert (r.status_code, r.text) == (404, "no matched ip found!")


def test_list_filters_disabled_after_push_delay() -> None:
    """The consumer list lags a write by the push delay and never shows disabled instances.

    The emulator runs on a clock the test moves, so "not pushed yet" is not a wall-clock race.
    """
    clock = Clock()
    nacos = start(clock=clock)
    try:
        nacos.register("orders", "10.0.0.5", 8080)
        clock.t += 1.0
        assert wait_for(lambda: len(consumer_hosts(nacos)) == 1, 10)
        call(nacos, "PATCH", "/v1/ns/instance", **IDS, enabled="false")
        # Background ticks ran, but the fake clock has not moved: however slow the machine,
        # only a wrong push delay could have pushed the write by now.
        ticked(nacos)
        assert len(consumer_hosts(nacos)) == 1  # not pushed yet
        clock.t += 1.0
        assert wait_for(lambda: consumer_hosts(nacos) == [], 10)
        catalog = call(nacos, "GET", "/v1/ns/catalog/instances", serviceName="orders").json()
        assert catalog["list"][0]["enabled"] is False
    finally:
        nacos.stop()


def consumer_hosts(nacos: NacosEmulator) -> list[object]:
    hosts: list[object] = call(nacos, "GET", "/v1/ns/instance/list", serviceName="orders").json()[
        "hosts"
    ]
    return hosts


def ticked(nacos: NacosEmulator) -> None:
    """Wait until a whole background tick has run after this call (it saw the clock as now)."""
    seen = nacos.ticks
    assert wait_for(lambda: nacos.ticks >= seen + 2, 10)


def test_http_delete_is_a_noop_for_grpc_instances(nacos: NacosEmulator) -> None:
    """DELETE answers ok but cannot remove an instance owned by a (gRPC) client."""
    nacos.register("orders", "10.0.0.5", 8080)
    assert call(nacos, "DELETE", "/v1/ns/instance", **IDS).text == "ok"
    assert len(nacos.admin_view("orders")) == 1


def test_expired_record_is_deleted_or_revived() -> None:
    """A record outlives its instance for metadata_expiry; a re-registration in time revives it."""
    clock = Clock()
    nacos = start(clock=clock, metadata_expiry=60, cleaner_interval=0, client_timeout=1e9)
    try:
        cid = nacos.register("orders", "10.0.0.5", 8080)
        call(nacos, "PATCH", "/v1/ns/instance", **IDS, enabled="false", weight="1")
        nacos.deregister(cid)
        record = nacos.ops_record("orders", "10.0.0.5", 8080)
        assert record is not None
        assert record["expired_at"] == 0.0
        clock.t = 30
        nacos.register("orders", "10.0.0.5", 8080)  # a new pod on the same IP within 60 s
        clock.t = 200
        ticked(nacos)  # the cleaner ran at 200, past the first record's expiry
        (inst,) = nacos.admin_view("orders")
        assert inst["enabled"] is False  # the stale-disabled IP-reuse problem
        nacos.deregister(next(iter(nacos.store.clients)))
        clock.t = 261
        assert wait_for(lambda: nacos.ops_record("orders", "10.0.0.5", 8080) is None, 10)
    finally:
        nacos.stop()


def test_3x_v1_admin_and_v2_are_gone() -> None:
    """On 3.x, v1 PUT/PATCH/detail and all of v2 answer 410 naming the v3 replacement."""
    nacos = start("3.x", admin_auth_enabled=False)
    try:
        for method, path in (("PATCH", "/v1/ns/instance"), ("GET", "/v2/ns/instance/list")):
            r = call(nacos, method, path, **IDS)
            assert r.status_code == 410
            assert "compatibility" in json.loads(r.json()["message"])["message"]
        assert call(nacos, "GET", "/v3/admin/core/state").json()["data"]["version"] == "3.0.3"
    finally:
        nacos.stop()


def test_3x_partial_defaults_weight_and_enabled() -> None:
    """3.x /partial defaults an omitted weight to 1.0 and enabled to true."""
    nacos = start("3.x", admin_auth_enabled=False)
    try:
        nacos.register("orders", "10.0.0.5", 8080, weight=4.0)
        r = call(nacos, "PUT", "/v3/admin/ns/instance/partial", **IDS, enabled="false")
        assert r.json()["code"] == 0
        (inst,) = nacos.admin_view("orders")
        assert (inst["enabled"], inst["weight"]) == (False, 1.0)
    finally:
        nacos.stop()


@pytest.mark.parametrize(
    ("flavour", "user", "status", "text"),
    [
        ("2.x", "ghost", 500, "caused: User ghost not found;"),
        ("1.x", "ghost", 403, "unknown user!"),
    ],
)
def test_login_failures(flavour: Flavour, user: str, status: int, text: str) -> None:
    """Login failures use each version's status code and text."""
    nacos = start(flavour, auth_enabled=True, users={"nacos": "right"})
    try:
        r = httpx.post(
            f"{nacos.url}/nacos/v1/auth/users/login", data={"username": user, "password": "x"}
        )
        assert (r.status_code, r.text) == (status, text)
    finally:
        nacos.stop()


def test_token_places_and_expiry() -> None:
    """A token works as Bearer, accessToken param or header; an expired one is refused."""
    nacos = start(auth_enabled=True, users={"nacos": "pw"})
    try:
        login = httpx.post(
            f"{nacos.url}/nacos/v1/auth/login", data={"username": "nacos", "password": "pw"}
        ).json()
        token = login["accessToken"]
        url = f"{nacos.url}/nacos/v1/ns/instance/list"
        assert httpx.get(url, params={"serviceName": "x"}).status_code == 403
        assert httpx.get(url, params={"serviceName": "x", "accessToken": token}).is_success
        assert httpx.get(
            url, params={"serviceName": "x"}, headers={"accessToken": token}
        ).is_success
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url, params={"serviceName": "x"}, headers=bearer).is_success
        nacos.expire_tokens()
        r = httpx.get(url, params={"serviceName": "x"}, headers=bearer)
        assert (r.status_code, r.json()["message"]) == (403, "token expired!")
    finally:
        nacos.stop()


def test_lab_clients_and_timeout() -> None:
    """Lab clients register over HTTP; one that stops beating is disconnected."""
    clock = Clock()
    nacos = start(clock=clock, client_timeout=0.3)
    try:
        r = httpx.post(
            f"{nacos.url}/nacos/lab/v1/clients", json={"service": "s", "ip": "127.0.0.1", "port": 1}
        )
        cid = r.json()["clientId"]
        assert httpx.put(f"{nacos.url}/nacos/lab/v1/clients/{cid}/beat").is_success
        assert len(nacos.admin_view("s")) == 1
        clock.t = 0.6  # past the timeout since the last beat; the background tick drops it
        assert wait_for(lambda: nacos.admin_view("s") == [], 30)
    finally:
        nacos.stop()


def test_watch_returns_on_change(nacos: NacosEmulator) -> None:
    """The watch long-poll returns as soon as the served list changes."""
    nacos.register("orders", "10.0.0.5", 8080)
    assert wait_for(lambda: len(nacos.consumer_view("orders")) == 1, 10)  # pushed
    url = f"{nacos.url}/nacos/lab/v1/watch"
    first = httpx.get(url, params={"serviceName": "orders", "revision": 0}).json()
    assert len(first["hosts"]) == 1
    call(nacos, "PATCH", "/v1/ns/instance", **IDS, enabled="false")
    started = time.monotonic()
    # The longest long-poll the emulator allows: returning at half of it can only mean the
    # change woke the poll, however slow the machine.
    second = httpx.get(
        url,
        params={"serviceName": "orders", "revision": first["revision"], "timeout": 60},
        timeout=90,
    ).json()
    assert second["hosts"] == []
    assert time.monotonic() - started < 30


def test_server_down(nacos: NacosEmulator) -> None:
    """A DOWN server answers 503 with Nacos's text."""
    nacos.set_down(True)
    r = call(nacos, "GET", "/v1/ns/instance/list", serviceName="orders")
    assert (r.status_code, r.text) == (503, "server is DOWNnow, please try again later!")


def test_put_keeps_the_expired_mark() -> None:
    """A PUT on an expired record does not revive it: it is deleted on the original schedule."""
    clock = Clock()
    nacos = start(clock=clock, metadata_expiry=60, cleaner_interval=0, client_timeout=1e9)
    try:
        cid = nacos.register("orders", "10.0.0.5", 8080)
        call(nacos, "PATCH", "/v1/ns/instance", **IDS, enabled="false", weight="1")
        nacos.deregister(cid)
        clock.t = 30
        assert call(nacos, "PUT", "/v1/ns/instance", **IDS, enabled="true").status_code == 200
        record = nacos.ops_record("orders", "10.0.0.5", 8080)
        assert record is not None
        assert record["expired_at"] == 0.0
        clock.t = 61
        assert wait_for(lambda: nacos.ops_record("orders", "10.0.0.5", 8080) is None, 30)
    finally:
        nacos.stop()


def test_wrong_password_answers_as_the_real_servers_do() -> None:
    """Real 2.3.1 breaks the answer off (status line ``HTTP/1.1 0``); real 3.1.0 answers 500."""
    for flavour in ("2.x", "3.x"):
        nacos = start(flavour, auth_enabled=True, users={"nacos": "right"})
        try:
            form = {"username": "nacos", "password": "x"}
            url = f"{nacos.url}/nacos/v1/auth/users/login"
            if flavour == "2.x":
                with pytest.raises(httpx.RemoteProtocolError):
                    httpx.post(url, data=form)
            else:
                assert httpx.post(url, data=form).status_code == 500
                v3 = httpx.post(f"{nacos.url}/nacos/v3/auth/user/login", data=form)
                assert v3.status_code == 500
                assert "No message available" in v3.text
        finally:
            nacos.stop()


def test_3x_main_port_has_no_v1_console() -> None:
    """3.x: the old console state path is gone from the main port (410, as real 3.1.0 says)."""
    nacos = start("3.x", admin_auth_enabled=False)
    try:
        assert call(nacos, "GET", "/v1/console/server/state").status_code == 410
        assert call(nacos, "GET", "/v1/console/health/readiness").status_code == 404
    finally:
        nacos.stop()


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_login_with_one_field_missing_is_a_500(flavour: Flavour) -> None:
    """2.x/3.x: a login with only the username (or only the password) fails with 500."""
    nacos = start(flavour, auth_enabled=True)
    try:
        r = httpx.post(f"{nacos.url}/nacos/v1/auth/users/login", data={"username": "nacos"})
        assert r.status_code == 500
        r = httpx.post(f"{nacos.url}/nacos/v1/auth/users/login", data={"password": "nacos"})
        assert r.status_code == 500
    finally:
        nacos.stop()
