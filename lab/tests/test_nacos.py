"""The Nacos backend against the emulator: real HTTP on loopback, every server flavour."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict

import httpx
import pytest

from agent.config import NacosSettings, ServerAddress
from agent.deadline import Deadline, SystemClock
from agent.exceptions import AuthError, InstanceNotFound, RegistryUnavailable
from agent.registry.nacos import NacosHttp, NacosRegistry
from prestop_lab.nacos_emulator import EmulatorConfig, Flavour, NacosEmulator
from prestop_lab.procs import wait_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

SERVICE, IP, PORT = "orders", "10.0.0.5", 8080
META = {"preserved.register.source": "SPRING_CLOUD", "zone": "a"}


def settings(
    *addrs: str, username: str | None = None, password: str | None = None
) -> NacosSettings:
    return NacosSettings(
        servers=tuple(ServerAddress(f"http://{a}/nacos") for a in addrs),
        namespace="public",
        group="DEFAULT_GROUP",
        cluster="DEFAULT",
        service=SERVICE,
        ip=IP,
        port=PORT,
        username=username,
        password=password,
    )


@pytest.fixture(name="http")
def fixture_http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def registry(http: httpx.Client, s: NacosSettings) -> NacosRegistry:
    return NacosRegistry(s, NacosHttp(s, http, SystemClock(), http_timeout=2.0))


def deadline(seconds: float = 10.0) -> Deadline:
    return Deadline.after(SystemClock(), seconds)


class Options(TypedDict, total=False):
    """The emulator settings these tests vary."""

    auth_enabled: bool
    admin_auth_enabled: bool
    users: dict[str, str]


def emulator(flavour: Flavour, **kw: Unpack[Options]) -> NacosEmulator:
    # The tests' registrations never beat: a starved machine must not see them expire.
    config = EmulatorConfig(flavour=flavour, push_delay=0.05, client_timeout=3600.0, **kw)
    return NacosEmulator(config)


def pushed(nacos: NacosEmulator, ip: str = IP) -> None:
    """Reads lag writes by the push delay: wait until the served list holds ``ip``."""
    assert wait_for(lambda: any(h["ip"] == ip for h in nacos.consumer_view(SERVICE)), 10)


@pytest.mark.parametrize(
    ("flavour", "method"),
    [
        ("2.x", "PATCH /v1/ns/instance"),
        ("3.x", "PUT /v3/admin/ns/instance/partial"),
        ("1.x", "PUT /v1/ns/instance"),
    ],
)
def test_take_out_keeps_weight_and_metadata(
    http: httpx.Client, flavour: Flavour, method: str
) -> None:
    """Each flavour disables the instance with its own API and keeps weight and metadata."""
    kw: Options = {"admin_auth_enabled": False} if flavour == "3.x" else {}
    with emulator(flavour, **kw) as nacos:
        nacos.register(SERVICE, IP, PORT, weight=3.5, metadata=dict(META))
        pushed(nacos)
        reg = registry(http, settings(nacos.addr))
        result = reg.take_out(deadline())
        assert result.method == method
        assert result.before.weight == 3.5
        (admin,) = nacos.admin_view(SERVICE)
        assert admin["enabled"] is False
        assert admin["weight"] == 3.5
        assert admin["metadata"] == META
        assert any(w.method in ("PATCH", "PUT") for w in nacos.writes())

        reg.put_back(deadline())
        (admin,) = nacos.admin_view(SERVICE)
        assert admin["enabled"] is True
        assert admin["weight"] == 3.5
        assert admin["metadata"] == META


@pytest.mark.parametrize("flavour", ["1.x", "2.x", "3.x"])
def test_consumer_view_drops_the_instance_after_the_push(
    http: httpx.Client, flavour: Flavour
) -> None:
    """Consumers see the instance until the push lag passes, then no more."""
    kw: Options = {"admin_auth_enabled": False} if flavour == "3.x" else {}
    with emulator(flavour, **kw) as nacos:
        nacos.register(SERVICE, IP, PORT)
        pushed(nacos)
        reg = registry(http, settings(nacos.addr))
        assert reg.visible_to_consumers(deadline()) is True
        reg.take_out(deadline())
        assert wait_for(lambda: reg.visible_to_consumers(deadline()) is False, 10)
        status = reg.status(deadline())
        assert status["registered"] is True
        assert status["admin_view"]["enabled"] is False
        assert status["consumer_visible"] is False


@pytest.mark.parametrize("flavour", ["1.x", "2.x", "3.x"])
def test_unknown_instance_is_never_written(http: httpx.Client, flavour: Flavour) -> None:
    """An ip:port that is not registered raises InstanceNotFound and writes nothing."""
    kw: Options = {"admin_auth_enabled": False} if flavour == "3.x" else {}
    with emulator(flavour, **kw) as nacos:
        nacos.register(SERVICE, "10.0.0.9", PORT)  # the service exists, our ip:port does not
        pushed(nacos, "10.0.0.9")
        reg = registry(http, settings(nacos.addr))
        with pytest.raises(InstanceNotFound):
            reg.take_out(deadline())
        with pytest.raises(InstanceNotFound):
            reg.put_back(deadline())
        assert nacos.writes() == []
        assert nacos.ops_record(SERVICE, IP, PORT) is None


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_login_and_token_reuse(http: httpx.Client, flavour: Flavour) -> None:
    """With auth on, the agent logs in once and reuses the token."""
    with emulator(flavour, auth_enabled=True, users={"nacos": "pw-1"}) as nacos:
        nacos.register(SERVICE, IP, PORT, weight=2.0)
        pushed(nacos)
        reg = registry(http, settings(nacos.addr, username="nacos", password="pw-1"))
        reg.take_out(deadline())
        logins = [r for r in nacos.requests if "login" in r.path]
        assert len(logins) == 1
        assert nacos.admin_view(SERVICE)[0]["enabled"] is False
        assert all("pw-1" not in str(r) for r in nacos.requests)


def test_expired_token_logs_in_again(http: httpx.Client) -> None:
    """A token the server calls expired leads to one fresh login, then success."""
    with emulator("2.x", auth_enabled=True, users={"nacos": "pw-1"}) as nacos:
        nacos.register(SERVICE, IP, PORT)
        pushed(nacos)
        reg = registry(http, settings(nacos.addr, username="nacos", password="pw-1"))
        assert reg.visible_to_consumers(deadline()) in (True, False)
        nacos.expire_tokens()
        reg.take_out(deadline())
        logins = [r for r in nacos.requests if "login" in r.path]
        assert len(logins) == 2
        assert nacos.admin_view(SERVICE)[0]["enabled"] is False


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_wrong_password_is_an_auth_error(http: httpx.Client, flavour: Flavour) -> None:
    """A wrong password is refused with a clear error, no write, and no secret in the text."""
    with emulator(flavour, auth_enabled=True, users={"nacos": "right"}) as nacos:
        nacos.register(SERVICE, IP, PORT)
        pushed(nacos)
        reg = registry(http, settings(nacos.addr, username="nacos", password="wrong-pw"))
        with pytest.raises(AuthError) as err:
            reg.take_out(deadline())
        assert "wrong-pw" not in str(err.value)
        assert "nacos" in str(err.value)
        assert nacos.writes() == []


def test_unknown_user_is_an_auth_error(http: httpx.Client) -> None:
    """2.x answers an unknown user with HTTP 500; that is an auth error, not an outage."""
    with emulator("2.x", auth_enabled=True) as nacos:
        reg = registry(http, settings(nacos.addr, username="ghost", password="x"))
        with pytest.raises(AuthError):
            reg.take_out(deadline())


def test_3x_admin_api_without_credentials(http: httpx.Client) -> None:
    """3.x guards its admin API by default: without credentials the error says what to set."""
    with emulator("3.x") as nacos:
        nacos.register(SERVICE, IP, PORT)
        pushed(nacos)
        reg = registry(http, settings(nacos.addr))
        with pytest.raises(AuthError, match="--username"):
            reg.take_out(deadline())


def test_failover_to_the_next_address(http: httpx.Client) -> None:
    """A dead first address and a DOWN second one are skipped; the third does the work."""
    with emulator("2.x") as down, emulator("2.x") as good:
        down.set_down(True)
        good.register(SERVICE, IP, PORT)
        pushed(good)
        reg = registry(http, settings("127.0.0.1:1", down.addr, good.addr))
        reg.take_out(deadline())
        assert good.admin_view(SERVICE)[0]["enabled"] is False


def test_all_addresses_down(http: httpx.Client) -> None:
    """No server answering is a transient RegistryUnavailable."""
    reg = registry(http, settings("127.0.0.1:1", "127.0.0.1:2"))
    with pytest.raises(RegistryUnavailable):
        reg.take_out(deadline(2))


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_ipv6_pod_ip_matches_the_registered_spelling(http: httpx.Client, flavour: Flavour) -> None:
    """Kubernetes says fd00::1; a Java app registers fd00:0:0:0:0:0:0:1. Same instance: the
    agent finds it by value and writes with the registry's own spelling."""
    kw: Options = {"admin_auth_enabled": False} if flavour == "3.x" else {}
    with emulator(flavour, **kw) as nacos:
        nacos.register(SERVICE, "fd00:0:0:0:0:0:0:1", PORT, weight=3.0, metadata=dict(META))
        pushed(nacos, "fd00:0:0:0:0:0:0:1")
        s = dataclasses.replace(settings(nacos.addr), ip="fd00::1")
        result = registry(http, s).take_out(deadline())
        assert result.before.ip == "fd00:0:0:0:0:0:0:1"
        (inst,) = nacos.admin_view(SERVICE)
        assert (inst["ip"], inst["enabled"], inst["weight"]) == ("fd00:0:0:0:0:0:0:1", False, 3.0)
