"""The Nacos adapter against the real servers' recorded answers (2.3.1 and 3.1.0-bugfix), in-process.

Each test replays what a real server answered the very requests the adapter makes
(``answers/README.md``), so the adapter's reading of the 2.x and 3.x API shapes is checked
without a socket or a JVM; the lab's emulator tests (``lab/tests/test_nacos.py``) cover the
behaviours no recording holds. The 1.x shape has no server in the lab: the 2.3.1 answers stand
in (the v1 API answers the same shapes), with the version edited to 1.4.8.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import httpx
import pytest

from agent.config import NacosSettings, ServerAddress
from agent.deadline import Deadline
from agent.exceptions import AuthError, DeadlineExceeded, InstanceNotFound
from agent.registry.nacos import NacosHttp, NacosRegistry
from tests.fakes import FakeClock
from tests.registry.replay import Answer, Recording, Replay, load

NACOS = "http://nacos.test:8848/nacos"
V2, V3 = load("nacos-2.3.1.json"), load("nacos-3.1.0-bugfix.json")
WRITES = {V2.server: "PATCH /v1/ns/instance", V3.server: "PUT /v3/admin/ns/instance/partial"}


def recorded_port(rec: Recording) -> int:
    """The provider's port, as the adapter asked for it when the answers were recorded."""
    detail = "/v3/admin/ns/instance" if rec.server.startswith("Nacos 3") else "/v1/ns/instance"
    return int(rec.first("get_instance", "GET", detail).params["port"])


def settings(rec: Recording, **changes: object) -> NacosSettings:
    s = NacosSettings(
        servers=(ServerAddress(NACOS),),
        namespace="public",
        group="DEFAULT_GROUP",
        cluster="DEFAULT",
        service="provider",
        ip="127.0.0.1",
        port=recorded_port(rec),
        username="nacos",
        password="recorded",
    )
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def adapter(
    replay: Replay, s: NacosSettings, clock: FakeClock
) -> tuple[NacosRegistry, httpx.Client]:
    http = replay.client()
    return NacosRegistry(s, NacosHttp(s, http, clock, http_timeout=2.0)), http


def dl(clock: FakeClock, seconds: float = 20.0) -> Deadline:
    return Deadline.after(clock, seconds)


BOTH = pytest.mark.parametrize("rec", [V2, V3], ids=["2.3.1", "3.1.0-bugfix"])


@BOTH
def test_connect_detects_the_version_and_logs_in(rec: Recording, clock: FakeClock) -> None:
    replay = Replay(rec.step("connect", "get_instance"))
    reg, _ = adapter(replay, settings(rec), clock)
    said = reg.connect(dl(clock))
    assert said.startswith(rec.server)
    assert "logged in as 'nacos'" in said
    reg.get_instance(dl(clock))
    # The token travels in headers only, never in a URL.
    after_login = replay.seen[-1]
    assert after_login.headers["accessToken"] == "<token>"
    assert all("accessToken" not in str(r.url) for r in replay.seen)


@BOTH
def test_the_instance_reads_as_registered(rec: Recording, clock: FakeClock) -> None:
    reg, _ = adapter(Replay(rec.step("connect", "get_instance")), settings(rec), clock)
    state = reg.get_instance(dl(clock))
    assert state is not None
    assert (state.ip, state.port, state.cluster) == ("127.0.0.1", recorded_port(rec), "DEFAULT")
    assert state.weight == 3.0
    assert state.metadata.get("zone") == "a"
    assert state.enabled is True
    # Spring Cloud Alibaba registers over gRPC: ephemeral; 2.x's v1 detail does not say.
    assert state.ephemeral is (True if rec is V3 else None)


@BOTH
def test_take_out_writes_back_the_weight_read(rec: Recording, clock: FakeClock) -> None:
    replay = Replay(rec.step("connect", "take_out"))
    reg, _ = adapter(replay, settings(rec), clock)
    reg.connect(dl(clock))
    result = reg.take_out(dl(clock))
    assert result.method == WRITES[rec.server]
    assert not result.already_out and not result.write_unconfirmed
    assert result.before.enabled is True and result.before.weight == 3.0
    # The read right after the write is what the server had before the push task ran (2.3.1
    # still says enabled: docs/nacos.md#push-delay); weight and metadata are what it checks.
    assert result.after is not None
    assert result.after.weight == 3.0 and result.after.metadata.get("zone") == "a"
    method, path = WRITES[rec.server].split()
    (write,) = replay.sent(method, path)
    assert write.url.params["enabled"] == "false"
    assert float(write.url.params["weight"]) == 3.0


@BOTH
def test_consumers_see_it_until_the_take_out(rec: Recording, clock: FakeClock) -> None:
    reg, _ = adapter(Replay(rec.step("connect", "visible")), settings(rec), clock)
    assert reg.visible_to_consumers(dl(clock)) is True
    reg, _ = adapter(Replay(rec.step("connect", "invisible")), settings(rec), clock)
    assert reg.visible_to_consumers(dl(clock)) is False


@BOTH
def test_put_back_enables_it_again(rec: Recording, clock: FakeClock) -> None:
    reg, _ = adapter(Replay(rec.step("connect", "put_back")), settings(rec), clock)
    reg.connect(dl(clock))
    result = reg.put_back(dl(clock))
    assert result.before.enabled is False
    assert not result.already_out
    # Both servers still read back enabled=false right after it (docs/nacos.md#push-delay).
    assert result.after is not None and result.after.weight == 3.0


@BOTH
def test_the_subscribed_consumer_is_listed(rec: Recording, clock: FakeClock) -> None:
    reg, _ = adapter(Replay(rec.step("connect", "subscribers")), settings(rec), clock)
    subs = reg.subscribers(dl(clock))
    assert subs is not None and len(subs) >= 1
    assert {s.ip for s in subs} == {"127.0.0.1"}
    assert all(s.agent for s in subs)  # the client's own description, e.g. Nacos-Java-Client


@BOTH
def test_an_unregistered_address_writes_nothing(rec: Recording, clock: FakeClock) -> None:
    replay = Replay(rec.step("connect", "not_registered"))
    reg, _ = adapter(replay, settings(rec, ip="10.255.255.1"), clock)
    with pytest.raises(InstanceNotFound, match="nothing was written"):
        reg.take_out(dl(clock))
    assert [r for r in replay.seen if r.method not in ("GET", "POST")] == []


@BOTH
def test_a_wrong_password_is_an_auth_error(rec: Recording, clock: FakeClock) -> None:
    reg, _ = adapter(Replay(rec.step("wrong_password")), settings(rec), clock)
    with pytest.raises(AuthError, match="login refused for user 'nacos'"):
        reg.connect(dl(clock))


@BOTH
def test_no_time_left_sends_nothing(rec: Recording, clock: FakeClock) -> None:
    replay = Replay(rec.step("connect"))
    reg, _ = adapter(replay, settings(rec), clock)
    with pytest.raises(DeadlineExceeded, match="no time left for GET /v3/admin/core/state"):
        reg.connect(Deadline(clock, clock.now()))
    assert replay.seen == []


def _as_1x(answers: list[Answer]) -> list[Answer]:
    """The 2.3.1 answers as a 1.4.8 server gives them: its version, and a PUT answered "ok"."""
    out: list[Answer] = []
    for a in answers:
        if a.path == "/v1/console/server/state":
            a = a.with_json({**a.json(), "version": "1.4.8"})
        if a.method == "PATCH":
            a = replace(a, request="PUT " + a.request.split(" ", 1)[1])
        out.append(a)
    return out


def test_1x_take_out_sends_every_field_back(clock: FakeClock) -> None:
    replay = Replay(_as_1x(V2.step("connect", "take_out")))
    reg, _ = adapter(replay, settings(V2), clock)
    assert reg.connect(dl(clock)).startswith("Nacos 1.4.8 (API 1.x)")
    result = reg.take_out(dl(clock))
    assert result.method == "PUT /v1/ns/instance"
    (put,) = replay.sent("PUT", "/v1/ns/instance")
    # A 1.x PUT replaces the record: what was read goes back unchanged, enabled aside.
    assert put.url.params["enabled"] == "false"
    assert float(put.url.params["weight"]) == 3.0
    assert json.loads(put.url.params["metadata"])["zone"] == "a"
    assert put.url.params["healthy"] == "true"
    # The v1 detail does not say whether it is ephemeral: nothing is made up.
    assert "ephemeral" not in put.url.params
