"""A write whose answer was lost is read back before it is called failed.

The fault lab's in-memory Nacos 2.x and Eureka apply the write and then lose the answer: the
client sees a ReadTimeout (after waiting its whole timeout on the fake clock) or a dropped
connection. The take-out (``prestop drain``) and the put-back (``prestop up``) must read the
instance back: in the wanted state is success, reported as ``write_unconfirmed`` (never as
``already_out``, which means nobody had to write); not in it is a failure that is retried.
"""

from __future__ import annotations

from typing import Literal

import pytest
from structlog.testing import capture_logs

from agent.deadline import Deadline
from agent.registry import TakeOut
from agent.retrying import call_with_retries
from tests.fakes import FakeClock
from tests.faultlab import EUREKA_ID, Answer, World, run_world

PATCH = "PATCH /nacos/v1/ns/instance"
NACOS_DETAIL = "GET /nacos/v1/ns/instance"
NACOS_CATALOG = "GET /nacos/v1/ns/catalog/instances"
EUREKA_STATUS = f"/eureka/apps/ORDERS/{EUREKA_ID}/status"
EUREKA_LIVE = f"GET /eureka/apps/ORDERS/{EUREKA_ID}"
WRITES = {"nacos": PATCH, "eureka": f"PUT {EUREKA_STATUS}"}


def _take_out(world: World) -> dict[str, object]:
    run = run_world(world)
    assert run.error is None and run.summary is not None
    assert world.stopped
    phases: dict[str, object] = run.summary["phases"]
    return phases


@pytest.mark.parametrize("lost_as", ["timeout", "dropped"])
@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_a_landed_write_whose_answer_was_lost_is_a_take_out(
    clock: FakeClock, registry: Literal["nacos", "eureka"], lost_as: Literal["timeout", "dropped"]
) -> None:
    """The write landed, its answer did not: take-out ok, ``write_unconfirmed``, not
    ``already_out``, written once (no retry), confirmed invisible, exit 0."""
    write = WRITES[registry]
    world = World(clock, registry_kind=registry, lost_answers={write: 1}, lost_as=lost_as)
    phases = _take_out(world)
    take_out = phases["take_out"]
    assert isinstance(take_out, dict)
    assert take_out["outcome"] == "ok", phases
    assert take_out["write_unconfirmed"] is True
    assert take_out["already_out"] is False
    assert world.requests.count(write) == 1, world.requests
    assert not world.enabled
    confirm = phases["confirm"]
    assert isinstance(confirm, dict) and confirm["outcome"] == "ok", phases


@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_a_lost_answer_and_a_lost_read_back_are_retried_honestly(
    clock: FakeClock, registry: Literal["nacos", "eureka"]
) -> None:
    """The write landed but neither its answer nor the read-back arrived: the take-out is
    retried; the retry finds the instance out through our own write, which is not
    ``already_out``; it writes again and that answer arrives (not unconfirmed)."""
    read_back = NACOS_DETAIL if registry == "nacos" else EUREKA_LIVE
    write = WRITES[registry]
    world = World(clock, registry_kind=registry, lost_answers={write: 1}, lost_after={read_back: 1})
    phases = _take_out(world)
    take_out = phases["take_out"]
    assert isinstance(take_out, dict) and take_out["outcome"] == "ok", phases
    assert take_out["already_out"] is False
    assert take_out["write_unconfirmed"] is False
    assert world.requests.count(write) == 2, world.requests
    assert not world.enabled


@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_a_write_that_did_not_land_is_still_a_failure(
    clock: FakeClock, registry: Literal["nacos", "eureka"]
) -> None:
    """Every write times out without landing: read back, found still in service, retried, and
    in the end reported degraded (never as done); the app is still drained and stopped."""
    write = WRITES[registry]
    world = World(clock, registry_kind=registry, faults={write: Answer(delay=60)})
    phases = _take_out(world)
    take_out = phases["take_out"]
    assert isinstance(take_out, dict) and take_out["outcome"] == "degraded", phases
    assert world.requests.count(write) >= 2, world.requests  # retried
    assert world.enabled


def _put_back(world: World, clock: FakeClock) -> TakeOut:
    """What ``prestop up`` does (agent/cli.py ``_switch``): put_back under call_with_retries."""
    http = world.client()
    registry = world.registry(http)
    deadline = Deadline.after(clock, 20)
    return call_with_retries(lambda: registry.put_back(deadline), deadline)


@pytest.mark.parametrize("lost_as", ["timeout", "dropped"])
@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_prestop_up_reads_back_a_lost_answer(
    clock: FakeClock, registry: Literal["nacos", "eureka"], lost_as: Literal["timeout", "dropped"]
) -> None:
    """``prestop up``: the put-back landed and its answer was lost: done, unconfirmed."""
    write = PATCH if registry == "nacos" else f"DELETE {EUREKA_STATUS}"
    world = World(
        clock, registry_kind=registry, enabled=False, lost_answers={write: 1}, lost_as=lost_as
    )
    with capture_logs() as logs:
        result = _put_back(world, clock)
    assert world.enabled
    assert result.write_unconfirmed is True and result.already_out is False
    assert world.requests.count(write) == 1, world.requests
    events = {e["event"] for e in logs}
    assert events & {"registry_write_unconfirmed", "eureka_write_unconfirmed"}, logs


@pytest.mark.parametrize("registry", ["nacos", "eureka"])
def test_prestop_up_on_an_instance_in_service_is_already(
    clock: FakeClock, registry: Literal["nacos", "eureka"]
) -> None:
    """Nothing was out: ``already_out`` (nobody had to write), answered, not unconfirmed."""
    world = World(clock, registry_kind=registry, enabled=True)
    result = _put_back(world, clock)
    assert result.already_out is True and result.write_unconfirmed is False
