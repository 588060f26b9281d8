"""The Eureka adapter against two real Eureka peers' recorded answers, in-process.

The recording (``answers/README.md``) is the adapter's own calls to two replicating peers with
a Eureka-client provider registered: find the instance, take it out on both, wait until
``apps/delta`` shows it out, put it back, cancel the lease after the stop.
"""

from __future__ import annotations

import httpx
import pytest

from agent.config import EurekaServer, EurekaSettings
from agent.deadline import Deadline
from agent.exceptions import DeadlineExceeded, InstanceNotFound
from agent.registry.eureka import OUT_OF_SERVICE, EurekaRegistry
from tests.fakes import FakeClock
from tests.registry.replay import Recording, Replay, load

REC = load("eureka.json")
PEERS = ("http://peer-1.test:8761/eureka/", "http://peer-2.test:8761/eureka/")


def instance_id(rec: Recording) -> str:
    """The provider's id (Spring's default, ``ip:name:port``), as recorded."""
    live = next(a for a in rec.steps["get_instance"] if a.path.count("/") == 3)
    return live.path.rsplit("/", 1)[1]


def settings(rec: Recording = REC, ip: str = "127.0.0.1") -> EurekaSettings:
    port = int(instance_id(rec).rsplit(":", 1)[1])
    return EurekaSettings(
        servers=tuple(EurekaServer(u) for u in PEERS),
        app="PROVIDER",
        ip=ip,
        port=port,
        app_name="provider",
    )


def adapter(replay: Replay, clock: FakeClock, s: EurekaSettings | None = None) -> EurekaRegistry:
    http: httpx.Client = replay.client()
    return EurekaRegistry(s or settings(), http, http_timeout=2.0)


def dl(clock: FakeClock) -> Deadline:
    return Deadline.after(clock, 20.0)


def test_both_peers_answer(clock: FakeClock) -> None:
    reg = adapter(Replay(REC.step("connect")), clock)
    assert reg.connect(dl(clock)) == f"Eureka: {PEERS[0]} ok; {PEERS[1]} ok"


def test_the_instance_is_found_by_ip_and_port(clock: FakeClock) -> None:
    reg = adapter(Replay(REC.step("get_instance")), clock)
    state = reg.get_instance(dl(clock))
    assert state is not None
    assert (state.ip, state.port, state.enabled) == ("127.0.0.1", settings().port, True)
    assert reg.resolve_id(dl(clock)) == instance_id(REC)


def test_take_out_sets_out_of_service_on_every_peer(clock: FakeClock) -> None:
    replay = Replay(REC.step("get_instance", "take_out"))
    reg = adapter(replay, clock)
    reg.get_instance(dl(clock))
    result = reg.take_out(dl(clock))
    assert result.method.endswith("on 2/2 servers")
    assert not result.already_out and not result.write_unconfirmed
    puts = replay.sent("PUT", "/status")
    assert [p.url.host for p in puts] == ["peer-1.test", "peer-2.test"]
    assert all(p.url.params["value"] == OUT_OF_SERVICE for p in puts)
    assert all(p.headers["Accept"] == "application/json" for p in replay.seen)


def test_consumers_see_it_until_the_delta_shows_it_out(clock: FakeClock) -> None:
    reg = adapter(Replay(REC.step("get_instance", "serving")), clock)
    assert reg.serving(dl(clock)) is True
    assert reg.visible_to_consumers(dl(clock)) is True
    reg = adapter(Replay(REC.step("get_instance", "invisible")), clock)
    assert reg.visible_to_consumers(dl(clock)) is False


def test_put_back_removes_the_override(clock: FakeClock) -> None:
    replay = Replay(REC.step("get_instance", "put_back"))
    reg = adapter(replay, clock)
    result = reg.put_back(dl(clock))
    assert result.method.endswith("on 2/2 servers")
    deletes = replay.sent("DELETE", "/status")
    assert deletes and all(d.url.params["value"] == "UP" for d in deletes)


def test_the_lease_is_cancelled_after_the_stop(clock: FakeClock) -> None:
    reg = adapter(Replay(REC.step("get_instance", "after_stop")), clock)
    reg.get_instance(dl(clock))
    said = reg.after_stop(dl(clock))
    assert said == f"{PEERS[0]}: cancelled; {PEERS[1]}: cancelled"


def test_an_unregistered_address_writes_nothing(clock: FakeClock) -> None:
    replay = Replay(REC.step("not_registered"))
    reg = adapter(replay, clock, settings(ip="10.255.255.1"))
    with pytest.raises(InstanceNotFound, match="nothing was"):
        reg.take_out(dl(clock))
    assert {r.method for r in replay.seen} == {"GET"}


def test_no_time_left_sends_nothing(clock: FakeClock) -> None:
    replay = Replay(REC.step("connect"))
    reg = adapter(replay, clock)
    with pytest.raises(DeadlineExceeded, match="no time left for GET"):
        reg.connect(Deadline(clock, clock.now()))
    assert replay.seen == []


def test_a_peer_done_stays_done_when_time_runs_out_for_the_next(clock: FakeClock) -> None:
    """No time left after peer 1 took the write: peer 2 is a failure, not the whole take-out."""
    replay = Replay(REC.step("get_instance", "take_out"))

    def handle(request: httpx.Request) -> httpx.Response:
        answer = replay.handle(request)
        if request.method == "PUT" and request.url.host == "peer-1.test":
            clock.advance(deadline.remaining())  # the write's answer came at the deadline
        return answer

    http = httpx.Client(transport=httpx.MockTransport(handle))
    reg = EurekaRegistry(settings(), http, http_timeout=2.0)
    deadline = dl(clock)
    reg.get_instance(deadline)
    result = reg.take_out(deadline)
    assert result.method.endswith("on 1/2 servers")
    assert [r.url.host for r in replay.sent("PUT", "/status")] == ["peer-1.test"]
