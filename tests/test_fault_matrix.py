"""Fault matrix: malformed server answers never crash the preStop run.

Each row serves one bad answer (httpx.MockTransport) to the real adapters and signals; the app
must still be stopped, the summary printed as strict JSON, the exit code say degraded (3) or
ok (0) and the run stay within the budget (on the fake clock).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.deadline import Deadline
from agent.drain.signals import Reading
from agent.sequence import Deps, Outcome, Phase, run_drain
from tests.fakes import FakeAction, FakeClock, FakeRegistry
from tests.faultlab import (
    PLAN,
    Answer,
    MetricsKind,
    RegistryKind,
    World,
    deep_json,
    json_answer,
    run_world,
    strict_json,
)

NACOS_INSTANCE = "GET /nacos/v1/ns/instance"
HOST = {"ip": "10.0.0.5", "port": 8080, "clusterName": "DEFAULT", "healthy": True}
GZIP_GARBAGE = Answer(200, b"this is not gzip", gzip_garbage=True, content_type="text/plain")
METRICS = "GET /actuator/metrics/http.server.requests"
ACTIVE = "GET /actuator/metrics/http.server.requests.active"


@dataclass(frozen=True)
class Case:
    name: str
    exit_code: int
    registry: RegistryKind = "nacos"
    metrics: MetricsKind = "prometheus"
    faults: dict[str, Answer] = field(default_factory=dict)
    registry_url: str | None = None
    metrics_url: str | None = None
    degraded_phase: str | None = None


CASES = [
    Case("healthy", 0),
    Case(
        "nacos weight is a word",
        3,
        faults={NACOS_INSTANCE: json_answer({**HOST, "weight": "heavy"})},
        degraded_phase="take_out",
    ),
    Case(
        "nacos weight is null",
        3,
        faults={NACOS_INSTANCE: json_answer({**HOST, "weight": None})},
        degraded_phase="take_out",
    ),
    Case(
        "nacos weight is a list",
        3,
        faults={NACOS_INSTANCE: json_answer({**HOST, "weight": [1]})},
        degraded_phase="take_out",
    ),
    Case(
        "nacos answers deeply nested JSON",
        3,
        faults={NACOS_INSTANCE: Answer(200, deep_json())},
        degraded_phase="take_out",
    ),
    Case(
        "nacos server state is deeply nested JSON",
        0,
        faults={"GET /nacos/v1/console/server/state": Answer(200, deep_json())},
    ),
    Case(
        "eureka applications is a list of numbers",
        3,
        registry="eureka",
        faults={"GET /eureka/apps/ORDERS": json_answer({"applications": [1]})},
        degraded_phase="take_out",
    ),
    Case(
        "eureka delta is a list of numbers",
        3,
        registry="eureka",
        faults={"GET /eureka/apps/delta": json_answer({"applications": [1]})},
        degraded_phase="confirm",
    ),
    Case(
        "eureka answers deeply nested JSON",
        3,
        registry="eureka",
        faults={"GET /eureka/apps/ORDERS": Answer(200, deep_json())},
        degraded_phase="take_out",
    ),
    Case("prometheus body is gzip garbage", 0, faults={"GET /actuator/prometheus": GZIP_GARBAGE}),
    Case(
        "nacos body is gzip garbage",
        3,
        faults={NACOS_INSTANCE: GZIP_GARBAGE},
        degraded_phase="take_out",
    ),
    Case("shutdown answer is gzip garbage", 0, faults={"POST /actuator/shutdown": GZIP_GARBAGE}),
    Case(
        "actuator COUNT is a string",
        0,
        metrics="actuator",
        faults={
            METRICS + "?tag=uri%3A%2Fw": json_answer(
                {"measurements": [{"statistic": "COUNT", "value": "many"}]}
            )
        },
    ),
    Case(
        "actuator measurements is a number",
        0,
        metrics="actuator",
        faults={ACTIVE: json_answer({"measurements": 5})},
    ),
    Case(
        "actuator availableTags values is a number",
        0,
        metrics="actuator",
        faults={METRICS: json_answer({"availableTags": [{"tag": "uri", "values": 7}]})},
    ),
    Case(
        "actuator COUNT is null",
        0,
        metrics="actuator",
        faults={
            ACTIVE: json_answer({"measurements": [{"statistic": "ACTIVE_TASKS", "value": None}]})
        },
    ),
    Case(
        "nacos host fails IDNA (xn--a)",
        3,
        registry_url="http://xn--a:8848/nacos",
        degraded_phase="take_out",
    ),
    Case(
        "eureka host fails IDNA (snowman)",
        3,
        registry="eureka",
        registry_url="http://\u2603\ufe0f.example/eureka/",
        degraded_phase="take_out",
    ),
    Case("metrics host fails IDNA", 0, metrics_url="http://xn--a:8080/actuator/prometheus"),
    Case(
        "prometheus counter is NaN",
        0,
        faults={
            "GET /actuator/prometheus": Answer(
                200,
                b'http_server_requests_seconds_count{uri="/work"} NaN\n'
                b'tomcat_threads_busy_threads{name="x"} +Inf\n',
                content_type="text/plain",
            )
        },
    ),
]


def _world(clock: FakeClock, case: Case) -> World:
    return World(
        clock,
        registry_kind=case.registry,
        metrics=case.metrics,
        faults=dict(case.faults),
        registry_url=case.registry_url,
        metrics_url=case.metrics_url,
    )


WORST: list[tuple[float, str]] = []  # (run time on the fake clock, case) per row


@pytest.fixture(scope="module", autouse=True)
def _report_worst() -> Iterator[None]:
    """With ``-s``: how close the slowest row came to the budget."""
    yield
    if WORST:
        took, name = max(WORST)
        print(
            f"\nfault matrix: {len(WORST)} rows, worst run {took:.2f} s of {PLAN.budget:g} s ({name})"
        )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_matrix(clock: FakeClock, case: Case) -> None:
    """The app is stopped, the summary is strict JSON, the exit code and the budget hold."""
    world = _world(clock, case)
    run = run_world(world)
    assert run.error is None, f"the run crashed: {run.error!r}"
    assert run.outcome is not None
    assert world.shutdown_calls >= 1 and world.stopped, "the app was not asked to stop"
    assert run.summary is not None, "no prestop_summary line"
    assert run.summary["exit_code"] == case.exit_code == run.outcome.exit_code, run.summary
    WORST.append((run.duration, case.name))
    assert run.duration <= PLAN.budget
    phases = run.summary["phases"]
    assert phases["shutdown"]["outcome"] == "ok"
    if case.degraded_phase is not None:
        assert phases[case.degraded_phase]["outcome"] == "degraded", phases
    for line in run.log_lines:
        strict_json(line)  # every log line, not only the summary


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.name.startswith(("eureka applications", "shutdown", "prometheus body"))],
    ids=lambda c: c.name,
)
def test_sidecar_never_fails_the_run(clock: FakeClock, case: Case) -> None:
    """The sidecar's single-flight run gets an outcome (never its 500) and logs the summary."""
    world = _world(clock, case)
    run = run_world(world, via_sidecar=True)
    assert run.error is None and run.outcome is not None
    assert run.summary is not None and run.summary["exit_code"] == case.exit_code
    assert world.stopped


def dumps(value: Any) -> str:
    """JSON as a strict consumer needs it: NaN or Infinity anywhere raise ValueError."""
    return json.dumps(value, allow_nan=False, default=str)


# --- bulkheads with the sequence's fakes ---


class Boom(Exception):
    """Not an AgentError."""


@dataclass
class ExplodingRegistry(FakeRegistry):
    def take_out(self, deadline: Deadline) -> Any:
        self.calls.append("take_out")
        raise KeyError("weight")

    def visible_to_consumers(self, deadline: Deadline) -> bool:
        raise Boom("nested too deep")


@dataclass
class ExplodingSignal:
    name: str = "exploding"

    def read(self, deadline: Deadline) -> Reading:
        raise TypeError("float() argument must be a string or a real number, not 'NoneType'")


@dataclass
class NaNSignal:
    clock: FakeClock
    name: str = "nan"

    def read(self, deadline: Deadline) -> Reading:
        return Reading(requests=math.nan, in_flight=math.inf)


class ExplodingConsumers:
    def poll(self, deadline: Deadline) -> None:
        raise Boom("consumer view")

    @property
    def knowledge_at(self) -> float | None:
        raise Boom("consumer knowledge")

    @property
    def forced_fallback(self) -> list[str]:
        raise Boom("consumer fallback")

    def summary(self) -> dict[str, Any]:
        return {"rate": math.nan}


@dataclass
class ExplodingAction:
    name: str = "exploding"
    triggered: int = 0

    def trigger(self, deadline: Deadline) -> Any:
        self.triggered += 1
        raise UnicodeError("idna: label empty")


def _fake_deps(clock: FakeClock, world: World, **kw: Any) -> Deps:
    def stop() -> None:
        world.stopped = True

    defaults: dict[str, Any] = {
        "registry": FakeRegistry(clock),
        "signal": None,
        "action": FakeAction(on_trigger=stop),
        "clock": clock,
    }
    return Deps(**{**defaults, **kw})


def test_every_phase_blows_up_and_the_app_is_still_stopped(clock: FakeClock) -> None:
    """Non-agent errors in take-out, sampling and the consumer view: shutdown still runs."""
    world = World(clock)
    registry = ExplodingRegistry(clock, cleans_up_after_stop=True)
    deps = _fake_deps(
        clock, world, registry=registry, signal=ExplodingSignal(), consumers=ExplodingConsumers()
    )
    start = clock.now()
    with capture_logs() as logs:
        outcome = run_drain(deps, PLAN)
    assert world.stopped
    assert outcome.exit_code == 3
    take_out = outcome.phase("take_out")
    assert isinstance(take_out, Phase) and take_out.outcome == "degraded"
    assert take_out.detail["error_type"] == "KeyError"
    failed = [e for e in logs if e["event"] == "phase_failed"]
    assert failed and failed[0]["phase"] == "take_out" and failed[0]["error_type"] == "KeyError"
    assert outcome.phase("shutdown") is not None
    assert strict_json(dumps(outcome.summary()))
    assert clock.now() - start <= PLAN.budget


def test_a_blown_up_shutdown_is_reported(clock: FakeClock) -> None:
    """The trigger itself raising a non-agent error: degraded, summary printed, no crash."""
    world = World(clock)
    action = ExplodingAction()
    deps = _fake_deps(clock, world, action=action)
    with capture_logs() as logs:
        outcome = run_drain(deps, PLAN)
    assert action.triggered == 1
    assert outcome.exit_code == 3
    shutdown = outcome.phase("shutdown")
    assert shutdown is not None and shutdown.outcome in ("degraded", "failed")
    assert any(e["event"] == "phase_failed" and e["phase"] == "shutdown" for e in logs)


def test_nan_rate_gives_a_strict_json_summary(clock: FakeClock) -> None:
    """A signal that reads NaN / Infinity: the summary carries no NaN, the drain falls back."""
    world = World(clock)
    deps = _fake_deps(clock, world, signal=NaNSignal(clock), consumers=ExplodingConsumers())
    outcome = run_drain(deps, PLAN)
    summary = strict_json(dumps(outcome.summary()))
    assert summary["exit_code"] == 0
    assert world.stopped


def test_summary_sanitises_floats() -> None:
    """Whatever a phase put in its detail, the summary is strict JSON."""
    outcome = Outcome(budget=math.inf)
    outcome.phases.append(Phase("drain", detail={"rate_before": math.nan, "x": [-math.inf]}))
    summary = outcome.summary()
    assert summary["budget_s"] is None
    assert summary["phases"]["drain"]["rate_before"] is None
    strict_json(dumps(summary))


def test_error_messages_carry_no_secrets(clock: FakeClock) -> None:
    """A phase_failed line masks URL credentials and tokens."""

    @dataclass
    class Leaky(FakeRegistry):
        def take_out(self, deadline: Deadline) -> Any:
            raise Boom("GET http://admin:s3cret@nacos:8848/x?accessToken=abc.def failed")

    world = World(clock)
    deps = _fake_deps(clock, world, registry=Leaky(clock))
    with capture_logs() as logs:
        outcome = run_drain(deps, PLAN)
    text = dumps(logs) + dumps(outcome.summary())
    assert "s3cret" not in text and "abc.def" not in text
    assert world.stopped


def test_keyboard_interrupt_is_not_swallowed(clock: FakeClock) -> None:
    """BaseException (Ctrl-C, SystemExit) still ends the run."""

    @dataclass
    class Interrupted(FakeRegistry):
        def take_out(self, deadline: Deadline) -> Any:
            raise KeyboardInterrupt

    world = World(clock)
    with pytest.raises(KeyboardInterrupt):
        run_drain(_fake_deps(clock, world, registry=Interrupted(clock)), PLAN)
