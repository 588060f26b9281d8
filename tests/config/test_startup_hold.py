"""The start-up hold's options, the hold record's file format, and check's weights finding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.check import weights_findings
from agent.config import load, load_sidecar
from agent.exceptions import ConfigError
from agent.holdstate import FILE_NAME, HoldFile
from agent.sequence import Outcome

BASE = {
    "PRESTOP_NACOS_ADDR": "127.0.0.1:8848",
    "PRESTOP_SERVICE": "orders",
    "PRESTOP_IP": "10.0.0.7",
    "PRESTOP_PORT": "8080",
    "PRESTOP_TOKEN": "t0ken",
}


def side(**env: str) -> object:
    e = {**BASE, **env}
    return load_sidecar({}, e, load({}, e))


def test_hold_is_off_by_default_and_on_with_a_delay_or_ready_url() -> None:
    s = load_sidecar({}, BASE, load({}, BASE))
    assert (s.startup_hold, s.startup_delay, s.ready_url, s.state_dir) == (False, 0.0, None, None)
    s = load_sidecar({"startup_delay": "5"}, BASE, load({}, BASE))
    assert (s.startup_hold, s.startup_delay) == (True, 5.0)
    e = {**BASE, "PRESTOP_READY_URL": "http://127.0.0.1:8080/ready"}
    s = load_sidecar({}, e, load({}, e))
    assert s.startup_hold and s.ready_url == "http://127.0.0.1:8080/ready"
    e = {**BASE, "PRESTOP_STARTUP_HOLD": "on"}
    assert load_sidecar({}, e, load({}, e)).startup_hold


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PRESTOP_STARTUP_HOLD": "maybe"}, "--startup-hold 'maybe' from PRESTOP_STARTUP_HOLD"),
        ({"PRESTOP_STARTUP_HOLD": "off", "PRESTOP_STARTUP_DELAY": "3"}, "--startup-hold"),
        ({"PRESTOP_STARTUP_DELAY": "-1"}, "--startup-delay"),
        ({"PRESTOP_READY_URL": "ready"}, "--ready-url"),
        ({"PRESTOP_STATE_DIR": "/nonexistent/prestop"}, "--state-dir"),
    ],
)
def test_bad_hold_options_name_the_field(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        side(**env)
    assert needle in str(err.value)


def test_hold_record_round_trip_and_atomic_file(tmp_path: Path) -> None:
    holds = HoldFile(tmp_path, "10.0.0.7:8080", pod="orders-7d9")
    assert holds.read() is None
    holds.write("operator", "prestop down")
    hold = holds.read()
    assert hold is not None and (hold.holder, hold.pod) == ("operator", "orders-7d9")
    # Only the record itself is left: the temporary file was renamed over it.
    assert os.listdir(tmp_path) == [FILE_NAME]
    # Another instance's record (the pod's port changed) is not ours.
    assert HoldFile(tmp_path, "10.0.0.7:9090").read() is None
    holds.clear()
    assert holds.read() is None
    holds.clear()  # clearing twice is fine


@pytest.mark.parametrize("content", ["{", "[]", '{"holder": "someone"}', '{"holder": 1}'])
def test_a_damaged_record_counts_as_none(tmp_path: Path, content: str) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    assert HoldFile(tmp_path, "10.0.0.7:8080").read() is None


def test_no_state_dir_keeps_nothing() -> None:
    holds = HoldFile(None, "10.0.0.7:8080")
    holds.write("startup")
    assert holds.read() is None


def test_weights_finding_says_what_weights_do() -> None:
    (nacos,) = weights_findings("nacos", 0.0, False)
    assert nacos.level == "ok"
    assert "spring.cloud.loadbalancer.nacos.enabled=true" in nacos.message
    assert "--startup-hold on" in nacos.message
    (eureka,) = weights_findings("eureka", 30.0, False)
    assert eureka.level == "warn" and "no weights" in eureka.message
    (held,) = weights_findings("eureka", 0.0, True)
    assert held.level == "ok" and "hold is on" in held.message
    assert json.dumps(held.__dict__)


def test_an_unwritable_state_dir_degrades_to_no_record(tmp_path: Path) -> None:
    """The hold still runs when the record cannot be written (read-only mount): as without
    --state-dir, never yielding to a record that is not there."""
    from agent.sidecar import AppHealth, Sidecar, SidecarOptions, StartupHold
    from tests.fakes import FakeClock, FakeSidecarRegistry, answering_http

    missing = tmp_path / "gone"
    missing.mkdir()
    registry = FakeSidecarRegistry()
    http = answering_http(200)
    sidecar = Sidecar(
        registry=registry,
        run_drain=_no_drain,
        app=AppHealth(http, "http://127.0.0.1:8080/actuator/health"),
        clock=FakeClock(),
        options=SidecarOptions(token="t", hold=StartupHold(enabled=True)),
        holds=HoldFile(missing, "10.0.0.7:8080"),
        resources=http,
    )
    missing.rmdir()  # the write now fails with FileNotFoundError (an OSError)
    sidecar.start_up(app_start_timeout=5)
    sidecar.close()
    assert registry.writes == ["take_out", "put_back"]
    assert registry.enabled and sidecar.state.hold_seconds is not None


def _no_drain() -> Outcome:
    raise AssertionError("the start-up never drains")
