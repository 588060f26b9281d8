"""The sidecar without HTTP: start-up, weights as a seam, readiness, the single-flight run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from agent.holdstate import HoldFile
from agent.sequence import Outcome, Phase
from agent.sidecar import (
    AppHealth,
    Sidecar,
    SidecarOptions,
    StartupHold,
    WarmupConfig,
    metrics_text,
)
from tests.fakes import FakeClock, FakeSidecarRegistry, answering_http


class Weights(FakeSidecarRegistry):
    """A registry with weights, as the wiring gives Nacos' adapter to the warm-up."""

    def set_weight(self, weight: float, deadline: object) -> None:
        self.weight = weight
        self.writes.append(f"weight {weight:g}")


def _sidecar(
    registry: FakeSidecarRegistry,
    *,
    weights: Weights | None = None,
    health: int = 200,
    options: SidecarOptions | None = None,
    holds: HoldFile | None = None,
    outcome: Outcome | None = None,
) -> tuple[Sidecar, httpx.Client]:
    http = answering_http(health)

    def run_drain() -> Outcome:
        assert outcome is not None, "this test does not drain"
        return outcome

    sidecar = Sidecar(
        registry=registry,
        run_drain=run_drain,
        app=AppHealth(http, "http://app/actuator/health"),
        clock=FakeClock(),
        options=options or SidecarOptions(token="t", ready_cache=0),
        weights=weights,
        holds=holds,
        resources=http,
    )
    return sidecar, http


def test_no_weights_no_warmup() -> None:
    """A registry without weights (Eureka) is not given to the warm-up: it says so, writes
    nothing, and is never probed for a method."""
    registry = FakeSidecarRegistry()
    options = SidecarOptions(token="t", warmup=WarmupConfig(duration=10))
    sidecar, _ = _sidecar(registry, options=options)
    with capture_logs() as logs:
        sidecar.start_up(app_start_timeout=5)
    sidecar.close()
    assert registry.writes == []
    assert [e["reason"] for e in logs if e["event"] == "warmup_unsupported"] == ["no weights"]


def test_weights_are_warmed_up_to_the_registered_weight() -> None:
    registry = Weights(weight=4.0)
    options = SidecarOptions(token="t", warmup=WarmupConfig(duration=2, start_weight=1, step=1))
    sidecar, _ = _sidecar(registry, weights=registry, options=options)
    sidecar.start_up(app_start_timeout=5)
    sidecar.close()
    assert registry.writes[0] == "weight 1" and registry.writes[-1] == "weight 4"
    assert sidecar.state.warmup_progress == 1.0


def test_a_stale_disable_is_repaired_at_start_up() -> None:
    registry = FakeSidecarRegistry(enabled=False)
    sidecar, _ = _sidecar(registry)
    sidecar.start_up(app_start_timeout=5)
    sidecar.close()
    assert registry.writes == ["put_back"] and registry.enabled
    assert sidecar.state.repaired


def test_the_start_up_hold_waits_for_the_app(tmp_path: Path) -> None:
    """Held out from registration until healthy for ``delay`` s, then put back in."""
    registry = FakeSidecarRegistry()
    hold = StartupHold(enabled=True, delay=2.0)
    options = SidecarOptions(token="t", hold=hold, ready_cache=0)
    sidecar, _ = _sidecar(registry, options=options, holds=HoldFile(tmp_path, "10.0.0.7:8080"))
    sidecar.start_up(app_start_timeout=5)
    sidecar.close()
    assert registry.writes == ["take_out", "put_back"]
    assert sidecar.state.hold_seconds is not None and sidecar.state.hold_seconds >= 2.0
    assert HoldFile(tmp_path, "10.0.0.7:8080").read() is None  # released: no record left


@pytest.mark.parametrize(
    ("health", "enabled", "reasons"),
    [
        (200, True, []),
        (503, True, ["app_not_healthy"]),
        (200, False, ["not_visible_to_consumers"]),
    ],
)
def test_readiness(health: int, enabled: bool, reasons: list[str]) -> None:
    sidecar, _ = _sidecar(FakeSidecarRegistry(enabled=enabled), health=health)
    assert sidecar.readiness() == (not reasons, reasons)
    sidecar.close()


def test_the_drain_runs_once_and_ends_readiness(tmp_path: Path) -> None:
    """Every caller gets the one run's outcome; the record names the drain; not ready after."""
    outcome = Outcome(phases=[Phase("drain", duration=1.5, detail={"requests_after_take_out": 3})])
    holds = HoldFile(tmp_path, "10.0.0.7:8080")
    sidecar, _ = _sidecar(FakeSidecarRegistry(), holds=holds, outcome=outcome)
    assert sidecar.flight.run() == (outcome, None)
    assert sidecar.flight.run() == (outcome, None)
    assert sidecar.readiness() == (False, ["draining"])
    hold = holds.read()
    assert hold is not None and hold.holder == "drain"
    text = metrics_text(sidecar.state, sidecar.flight.result)
    assert "prestop_draining 1" in text and "prestop_requests_after_take_out 3" in text
    sidecar.close()


def test_close_closes_the_resources() -> None:
    sidecar, http = _sidecar(FakeSidecarRegistry())
    with sidecar:
        pass
    assert http.is_closed


def test_the_token_is_compared_whole() -> None:
    sidecar, _ = _sidecar(FakeSidecarRegistry(), options=SidecarOptions(token="s3cret"))
    assert sidecar.authorized("s3cret")
    assert not sidecar.authorized("s3cre") and not sidecar.authorized(None)
    sidecar.close()
