"""The rollout benchmark, time-scaled for CI: the agent loses nothing, no preStop loses requests."""

from __future__ import annotations

from typing import TypedDict

import pytest

from prestop_lab.rollout import RolloutResult, RolloutSettings, run_rollout

pytestmark = pytest.mark.slow


class Short(TypedDict):
    """The time-scaled settings every test here shares."""

    replicas: int
    rate: float
    time_scale: float
    grace: float
    tail_ms: float


SHORT: Short = {"replicas": 2, "rate": 40.0, "time_scale": 0.1, "grace": 20.0, "tail_ms": 1000.0}


def test_agent_loses_no_request() -> None:
    """With `prestop drain` as the preStop hook a rolling update fails no request."""
    result = run_rollout(RolloutSettings(strategy="agent", **SHORT))
    assert result.errors == 0, result.errors_by_kind
    assert result.requests > 200
    for pod in result.pods:
        assert pod.prestop_exit == 0
        assert not pod.killed
        assert pod.drain_s is not None
        assert pod.drain_s < SHORT["grace"]
    # The report's marks, in the order they happen (the agent's phases from its summary).
    assert [p.pod for p in result.pods] == ["old-1", "old-2"]
    for pod in result.pods:
        kinds = [e.kind for e in result.events if e.instance == pod.instance]
        order = ["prestop_start", "take_out", "confirmed", "drain_end", "shutdown", "port_closed"]
        assert [k for k in kinds if k in order] == order, kinds
        assert "sigkill" not in kinds
    assert {e.pod for e in result.events if e.kind == "ready"} == {"new-1", "new-2"}


def test_no_prestop_loses_requests() -> None:
    """Without a preStop hook, consumers with stale lists hit the stopped pods."""
    result = run_rollout(RolloutSettings(strategy="none", **SHORT))
    assert result.errors > 0
    assert "connect_refused" in result.errors_by_kind
    kinds = {e.kind for e in result.events if e.pod == "old-1"}
    assert {"sigterm", "port_closed"} <= kinds
    assert "prestop_start" not in kinds


def test_sidecar_with_httpget_hook_loses_no_request() -> None:
    """`prestop serve` beside each pod, called by an httpGet-style hook: no failed request."""
    settings = RolloutSettings(strategy="agent", mode="sidecar", **SHORT)
    result = run_rollout(settings)
    assert result.strategy == "agent-sidecar"
    assert result.errors == 0, result.errors_by_kind
    for pod in result.pods:
        assert pod.prestop_exit == 0
        assert pod.sidecar_rss_mb is not None
        assert pod.prestop_summary["phases"]["shutdown"]["app_stopped"] is True


def test_eureka_agent_loses_no_request_and_cancels_after_stop() -> None:
    """Eureka: caches, fetching consumers and LB caches (time-scaled); the agent loses nothing
    and cancels each lease only after the pod's app stopped."""
    settings = RolloutSettings(strategy="agent", registry="eureka", **SHORT)
    result = run_rollout(settings)
    assert result.strategy == "agent-eureka"
    assert result.errors == 0, result.errors_by_kind
    for pod in result.pods:
        assert pod.prestop_exit == 0
        phases = pod.prestop_summary["phases"]
        assert phases["take_out"]["outcome"] == "ok"
        assert phases["shutdown"]["app_stopped"] is True
        assert phases["deregister"]["outcome"] == "ok"


def test_eureka_without_prestop_loses_requests() -> None:
    """Eureka consumers hold stopped pods for a fetch interval and a cache TTL."""
    settings = RolloutSettings(strategy="none", registry="eureka", **SHORT)
    result = run_rollout(settings)
    assert result.errors > 0


def test_eureka_sidecar_loses_no_request() -> None:
    """`prestop serve` with Eureka, called by an httpGet-style hook: no failed request."""
    settings = RolloutSettings(strategy="agent", registry="eureka", mode="sidecar", **SHORT)
    result = run_rollout(settings)
    assert result.strategy == "agent-sidecar-eureka"
    assert result.errors == 0, result.errors_by_kind
    for pod in result.pods:
        assert pod.prestop_exit == 0
        assert pod.prestop_summary["phases"]["deregister"]["outcome"] == "ok"


def test_told_consumers_all_let_go_and_nothing_is_lost() -> None:
    """--notify: every consumer's cache is evicted once its view let go, no failed request.

    The drain ends on that knowledge (``consumers_let_go``) unless a request arrives after it,
    which voids it (the safe side): a consumer thread that picked the pod just before the
    eviction and was starved for longer than the settle does exactly that on a busy machine,
    so the quiet window may end such a drain instead. Which end wins is the policy's, tested on
    a fake clock (tests/drain); here --min-wait 4 gives every consumer time to be seen letting
    go before either end is possible."""
    result = run_rollout(RolloutSettings(strategy="agent", notify=True, min_wait=4.0, **SHORT))
    assert_every_consumer_let_go(result)


def assert_every_consumer_let_go(result: RolloutResult) -> None:
    """No failed request, and each pod's drain saw all 3 consumers let go, whichever end won."""
    assert result.errors == 0, result.errors_by_kind
    for pod in result.pods:
        drain = pod.prestop_summary["phases"]["drain"]
        assert drain["reason"] in ("consumers_let_go", "quiet"), drain
        assert drain["consumers"]["consumers"] == 3, drain
        assert len(drain["consumers"]["let_go"]) == 3, drain
        assert drain["consumers"]["unconfirmed"] == {}, drain
        assert drain["consumers"]["all_let_go_after_s"] is not None, drain


def test_a_consumer_without_endpoints_forces_the_quiet_window() -> None:
    """One consumer exposes no actuator: still no failed request, the drain falls back to its
    quiet window, and the summary names that consumer and why."""
    settings = RolloutSettings(
        strategy="agent", notify=True, consumer_endpoints="all-but-one", **SHORT
    )
    result = run_rollout(settings)
    assert result.errors == 0, result.errors_by_kind
    for pod in result.pods:
        drain = pod.prestop_summary["phases"]["drain"]
        assert drain["reason"] == "quiet", drain
        unconfirmed = drain["consumers"]["unconfirmed"]
        assert len(unconfirmed) == 1, drain
        assert "HTTP 404" in next(iter(unconfirmed.values()))
        assert len(drain["consumers"]["let_go"]) == 2


def test_the_sidecar_tells_the_consumers_too() -> None:
    """`prestop serve` runs the same sequence: it tells every consumer and sees each let go.

    As in the exec test above, the drain's end may be the quiet window rather than that
    knowledge on a busy machine (a starved consumer thread's request voids it), so the test
    asserts what the sidecar learnt, and --min-wait 4 leaves time to learn it."""
    settings = RolloutSettings(strategy="agent", mode="sidecar", notify=True, min_wait=4.0, **SHORT)
    assert_every_consumer_let_go(run_rollout(settings))
