"""Rolling updates on the real stack: real Nacos 2.x and 3.x and Eureka servers, Spring Cloud
providers on Tomcat and a Spring Cloud LoadBalancer consumer, all built by lab/java/build.sh.

The servers start once per session (lab/tests/conftest.py). A missing jar is a failure that
names the build command, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict

import pytest

from prestop_lab.real import EurekaPeers, NacosServer, RealEurekaLab, RealNacosLab
from prestop_lab.rollout import LabRegistry, RolloutResult, RolloutSettings, run_rollout

if TYPE_CHECKING:
    from typing_extensions import Unpack

pytestmark = [pytest.mark.slow, pytest.mark.real, pytest.mark.timeout(900)]


class Short(TypedDict):
    """The time-scaled settings every test here shares."""

    replicas: int
    rate: float
    time_scale: float
    grace: float
    tail_ms: float


# Two replicas at a 0.25 time scale: the LB cache is 8.75 s, Eureka's caches 7.5 s and 8 s.
SHORT: Short = {"replicas": 2, "rate": 40.0, "time_scale": 0.25, "grace": 40.0, "tail_ms": 1000.0}


class Options(TypedDict, total=False):
    """What the tests here vary."""

    strategy: str
    registry: str
    flavour: str
    notify: bool


def settings(**kw: Unpack[Options]) -> RolloutSettings:
    return RolloutSettings(stack="real", **SHORT, **kw)


@pytest.fixture(name="nacos2")
def fixture_nacos2(real_nacos2: NacosServer) -> Iterator[LabRegistry]:
    with RealNacosLab(settings(flavour="2.x"), real_nacos2) as lab:
        yield lab


@pytest.fixture(name="nacos3")
def fixture_nacos3(real_nacos3: NacosServer) -> Iterator[LabRegistry]:
    with RealNacosLab(settings(flavour="3.x"), real_nacos3) as lab:
        yield lab


@pytest.fixture(name="eureka")
def fixture_eureka(real_eureka: EurekaPeers) -> Iterator[LabRegistry]:
    assert real_eureka.cache_interval_s == 30 * SHORT["time_scale"]
    with RealEurekaLab(settings(registry="eureka"), real_eureka) as lab:
        yield lab


def explain(result: RolloutResult) -> str:
    """What a failed run needs to be understood: the errors per instance and kind, when they
    happened, and each pod's timeline and take-out, confirmation and drain phases."""
    t0 = result.started_at
    errors: dict[tuple[str, str], list[float]] = {}
    for r in result.records:
        if r.outcome != "ok":
            errors.setdefault((r.instance, r.outcome), []).append(r.start - t0)
    lines = [
        f"{n} x {kind} on {inst} from t={min(ts):.2f} to {max(ts):.2f} s"
        for (inst, kind), ts in errors.items()
        for n in [len(ts)]
    ]
    lines += [f"{e.pod} {e.instance} {e.kind} t={e.t:.2f}" for e in result.events]
    for pod in result.pods:
        phases = pod.prestop_summary.get("phases", {})
        lines.append(
            f"{pod.instance}: "
            + "; ".join(f"{k}={phases.get(k)}" for k in ("take_out", "confirm", "drain"))
        )
    return "\n".join(lines)


def assert_lossless_agent(result: RolloutResult) -> None:
    assert result.errors == 0, f"{result.errors_by_kind}\n{explain(result)}"
    assert result.requests > 100
    for pod in result.pods:
        assert pod.prestop_exit == 0, pod.prestop_summary
        assert not pod.killed
        assert pod.drain_s is not None
        phases = pod.prestop_summary["phases"]
        assert phases["take_out"]["outcome"] == "ok", phases
        assert phases["shutdown"]["app_stopped"] is True, phases


def test_nacos2_agent_loses_no_request(nacos2: LabRegistry) -> None:
    """Nacos 2.3.1, apps registered over gRPC by Spring Cloud Alibaba: the agent loses nothing."""
    assert_lossless_agent(run_rollout(settings(strategy="agent", flavour="2.x"), nacos2))


def test_nacos2_without_prestop_loses_requests(nacos2: LabRegistry) -> None:
    """The consumer's load-balancer cache still routes to the stopped pods."""
    result = run_rollout(settings(strategy="none", flavour="2.x"), nacos2)
    assert result.errors > 0


def test_nacos3_agent_loses_no_request(nacos3: LabRegistry) -> None:
    """Nacos 3.1.0: the agent takes the instance out through the v3 admin API, loses nothing."""
    assert_lossless_agent(run_rollout(settings(strategy="agent", flavour="3.x"), nacos3))


def test_nacos3_told_consumer_lets_go(nacos3: LabRegistry) -> None:
    """--notify on the real stack: the Spring consumer's nacosdiscovery view drops the pod, its
    Caffeine load-balancer cache is evicted through /actuator/caches, every drain ends on that
    knowledge, and nothing is lost."""
    result = run_rollout(settings(strategy="agent", flavour="3.x", notify=True), nacos3)
    assert_lossless_agent(result)
    ours = nacos3.consumer_actuator()
    assert ours is not None
    port = ours.split(":")[-1].split("/")[0]
    for pod in result.pods:
        drain = pod.prestop_summary["phases"]["drain"]
        told = drain["consumers"]
        # The Spring consumer let go: its view dropped the pod, its cache was evicted.
        assert f"127.0.0.1:{port}" in told["let_go"], drain
        # Knowledge may still lose to the quiet window on a loaded machine: a count that rises
        # after the settle while in flight is unknown voids it (the safe side), and a server
        # shared with other tests may list a subscriber of theirs. Never an earlier end.
        assert drain["reason"] in ("consumers_let_go", "quiet"), drain


def test_eureka_agent_loses_no_request_and_cancels_after_stop(eureka: LabRegistry) -> None:
    """Two replicating Eureka servers and Spring's Eureka client: nothing lost, lease cancelled
    once the app stopped."""
    result = run_rollout(settings(strategy="agent", registry="eureka"), eureka)
    assert_lossless_agent(result)
    for pod in result.pods:
        assert pod.prestop_summary["phases"]["deregister"]["outcome"] == "ok"
