"""Property: whatever the registry, metrics and shutdown endpoints answer, the run holds.

Generated answers (status codes, valid and invalid JSON, wrong types, deep nesting, gzip
garbage, delays up to past the request timeout) are served by httpx.MockTransport to the real
adapters and signals, on a fake clock. For every one: the app is asked to stop, the summary is
printed as strict JSON, the exit code is 0 or 3, and the run stays within the budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeClock
from tests.faultlab import EUREKA_ID, PLAN, Answer, World, deep_json, run_world

NACOS_ROUTES = [
    "GET /nacos/v3/admin/core/state",
    "GET /nacos/v1/console/server/state",
    "GET /nacos/v1/ns/instance",
    "PATCH /nacos/v1/ns/instance",
    "GET /nacos/v1/ns/catalog/instances",
    "GET /nacos/v1/ns/instance/list",
]
EUREKA_ROUTES = [
    "GET /eureka/apps/ORDERS",
    f"GET /eureka/apps/ORDERS/{EUREKA_ID}",
    f"PUT /eureka/apps/ORDERS/{EUREKA_ID}/status",
    "GET /eureka/apps/delta",
    f"DELETE /eureka/apps/ORDERS/{EUREKA_ID}",
]
APP_ROUTES = [
    "GET /actuator/prometheus",
    "GET /actuator/metrics/http.server.requests",
    "GET /actuator/metrics/http.server.requests.active",
    "POST /actuator/shutdown",
]
# Field names the adapters read, so that generated JSON hits their parsers.
KEYS = [
    "weight", "ip", "port", "enabled", "healthy", "metadata", "hosts", "data", "list", "version",
    "accessToken", "applications", "application", "instance", "name", "instanceId", "ipAddr",
    "status", "overriddenStatus", "$", "measurements", "availableTags", "statistic", "value",
    "tag", "values",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "heavy", "UP", "OUT_OF_SERVICE", "10.0.0.5", "8080", "COUNT", "NaN"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),  # invalid JSON, invalid UTF-8, invalid Prometheus text
    st.sampled_from([500, 5_000, 100_000]).map(deep_json),
    st.just(b""),
    st.sampled_from(
        [
            b'http_server_requests_seconds_count{uri="/w"} NaN\n',
            b'http_server_requests_seconds_count{uri="/w"} 1e999\n',
            b"tomcat_threads_busy_threads -Inf\n",
        ]
    ),
)
answers = st.builds(
    Answer,
    status=st.sampled_from([200, 200, 200, 204, 301, 400, 401, 403, 404, 410, 500, 502, 503]),
    body=bodies,
    gzip_garbage=st.booleans(),
    delay=st.sampled_from([0.0, 0.0, 0.3, 1.5, 2.9, 4.0]),  # 4 s: past the request timeout
    content_type=st.sampled_from(["application/json", "text/plain; charset=utf-8"]),
)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    registry = draw(st.sampled_from(["nacos", "eureka"]))
    routes = (NACOS_ROUTES if registry == "nacos" else EUREKA_ROUTES) + APP_ROUTES
    return {
        "registry_kind": registry,
        "metrics": draw(st.sampled_from(["prometheus", "actuator"])),
        "faults": draw(st.dictionaries(st.sampled_from(routes), answers, max_size=4)),
        "kind_faults": draw(
            st.dictionaries(st.sampled_from(["registry", "app"]), answers, max_size=1)
        ),
    }


WORST: list[tuple[float, str]] = []  # (run time on the fake clock, registry) per example


@pytest.fixture(scope="module", autouse=True)
def _report_worst() -> Iterator[None]:
    """With ``-s``: how close the slowest generated run came to the budget."""
    yield
    if WORST:
        took, registry = max(WORST)
        print(
            f"\nproperty: {len(WORST)} examples, worst run {took:.2f} s of the "
            f"{PLAN.budget:g} s budget ({registry})"
        )


# A fixed seed: the same examples on every run, so a failure is a bug, not luck.
FIXED = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# The full few hundred examples cost seconds, so they are in the slow tier (CI runs it); the
# fast tier keeps a handful of its own, enough to catch a run that crashes on a common answer.
@pytest.mark.slow
@settings(FIXED, max_examples=300)
@given(spec=worlds())
def test_any_answer_still_stops_the_app_with_a_summary(spec: dict[str, Any]) -> None:
    _the_run_holds(spec)


@settings(FIXED, max_examples=25)
@given(spec=worlds())
def test_a_few_answers_still_stop_the_app_with_a_summary(spec: dict[str, Any]) -> None:
    _the_run_holds(spec)


def _the_run_holds(spec: dict[str, Any]) -> None:
    clock = FakeClock()
    world = World(clock, **spec)
    run = run_world(world)
    assert run.error is None, f"the run crashed: {run.error!r}"
    assert world.shutdown_calls >= 1, "the app was not asked to stop"
    assert run.summary is not None, "no prestop_summary line"
    assert run.summary["exit_code"] in (0, 3)
    WORST.append((run.duration, world.registry_kind))
    assert run.duration <= PLAN.budget
