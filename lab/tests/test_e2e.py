"""The real CLI against real processes: the emulator, demo apps, and `prestop drain`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from prestop_lab import procs
from prestop_lab.demo import DemoSettings, render, run_demo, start_app
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator

pytestmark = pytest.mark.slow


def cli(command: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`prestop COMMAND` as a real subprocess, with only the given PRESTOP_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRESTOP_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", command, *args],
        env={**base, "PRESTOP_LOG_TO_PID1": "false", "PRESTOP_LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def drain(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = cli("drain", env, *args)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return result.returncode, events


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    # Registrations made by the tests never beat: a starved machine must not see them expire.
    config = EmulatorConfig(
        auth_enabled=True, users={"nacos": "pw"}, push_delay=0.2, client_timeout=3600.0
    )
    with NacosEmulator(config) as nacos:
        yield nacos


def _env(nacos_addr: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "PRESTOP_NACOS_ADDR": nacos_addr,
        "PRESTOP_SERVICE": "demo",
        "POD_IP": "127.0.0.1",
        "SERVER_PORT": str(port),
        "NACOS_USERNAME": "nacos",
        "NACOS_PASSWORD": "pw",
        "PRESTOP_MIN_WAIT": "0.5",
        "PRESTOP_QUIET_WINDOW": "1",
        **extra,
    }


def test_zero_lost_requests_with_a_live_consumer() -> None:
    """The whole sequence against the emulator: a live consumer loses no request."""
    settings = DemoSettings(rate=40, staleness=0.5, budget=15, push_delay=0.3)
    result = run_demo(settings)
    assert result.errors == 0, result.errors_by_kind
    assert result.agent_exit_code == 0
    assert result.shutdown_confirmed
    assert result.app_exit_code == 0
    assert result.time_to_invisible_s is not None
    assert result.requests > 100
    assert len(result.per_instance) == 2
    assert result.consumers_let_go  # the agent saw the consumer drop the instance
    # The table names the drained instance and says what set the drain time.
    assert result.drained_instance in result.per_instance
    assert result.min_wait_s == 2.0
    text = render(result, settings)
    assert f"drained   {result.drained_instance}" in text
    assert any(f"set by {w}" in text for w in ("--min-wait", "the quiet window", "the consumers"))


def test_registry_down_fails_open_within_budget() -> None:
    """Registry unreachable: the app is still stopped, exit 3, within the budget."""
    port = procs.free_port()
    app = start_app(None, port, 5)
    try:
        rc, events = drain(
            {
                **_env("127.0.0.1:1", port),
                "PRESTOP_BUDGET": "15",
                "PRESTOP_MAX_WAIT": "3",
                # The app's stop gets 8 s, so a starved machine still confirms it; the budget
                # holds that with a shorter registry timeout than the default.
                "PRESTOP_HTTP_TIMEOUT": "2",
                "PRESTOP_SHUTDOWN_TIMEOUT": "8",
            }
        )
        assert rc == 3
        summary = events[-1]
        assert summary["event"] == "prestop_summary"
        # The run's own clock (interpreter start-up is outside it), with a starved machine's
        # scheduling as the margin.
        assert summary["duration_s"] <= 15 + 2.0
        assert summary["phases"]["take_out"]["outcome"] == "degraded"
        assert summary["phases"]["shutdown"]["app_stopped"] is True
        assert app.wait(30) == 0
    finally:
        app.kill()


def test_wrong_password_exit_3_nothing_written(nacos: NacosEmulator) -> None:
    """A wrong password: no write reaches the registry, the app is still stopped, exit 3."""
    port = procs.free_port()
    app = start_app(nacos.addr, port, 5)
    try:
        assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)
        rc, events = drain(
            {**_env(nacos.addr, port), "NACOS_PASSWORD": "wrong", "PRESTOP_BUDGET": "10"}
        )
        assert rc == 3
        assert nacos.writes() == []
        assert "wrong" not in json.dumps(events)
        assert events[-1]["phases"]["take_out"]["reason"] == "AuthError"
    finally:
        app.kill()


def test_app_ignoring_shutdown_is_reported(nacos: NacosEmulator) -> None:
    """An app that ignores /actuator/shutdown is reported (exit 3) and the agent keeps its budget."""
    port = procs.free_port()
    app = start_app(nacos.addr, port, 5, "--ignore-shutdown")
    try:
        assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)
        short = {
            "PRESTOP_BUDGET": "6.5",
            "PRESTOP_HTTP_TIMEOUT": "2",
            "PRESTOP_SHUTDOWN_TIMEOUT": "3",
        }
        rc, events = drain({**_env(nacos.addr, port), **short})
        assert rc == 3
        # The run's own clock (the process's start-up is not the agent's to bound): the wait
        # for the stop ended at the deadline, give or take a starved machine's scheduling.
        assert events[-1]["duration_s"] <= 6.5 + 2.0
        assert any(e["event"] == "app_not_stopped" for e in events)
        assert events[-1]["phases"]["shutdown"]["app_stopped"] is False
        assert nacos.admin_view("demo")[0]["enabled"] is False
    finally:
        app.kill()


def test_unknown_instance_writes_nothing(nacos: NacosEmulator) -> None:
    """An instance that is not registered: reported, nothing written, app still stopped."""
    port = procs.free_port()
    app = start_app(nacos.addr, port, 5)
    try:
        assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)
        rc, events = drain(
            {
                **_env(nacos.addr, port),
                "POD_IP": "10.9.9.9",
                "PRESTOP_BUDGET": "8.5",
                "PRESTOP_HTTP_TIMEOUT": "2",
            }
        )
        assert rc == 3
        assert nacos.writes() == []
        assert nacos.ops_record("demo", "10.9.9.9", port) is None
        assert events[-1]["phases"]["take_out"]["reason"] == "instance_not_found"
    finally:
        app.kill()


def test_bad_config_touches_nothing(nacos: NacosEmulator) -> None:
    """A config error exits 2 before any request reaches the registry."""
    rc, _ = drain({**_env(nacos.addr, 8080), "PRESTOP_MAX_WAIT": "never"})
    assert rc == 2
    assert nacos.requests == []


def test_signal_shutdown_by_pid(nacos: NacosEmulator) -> None:
    """--shutdown signal sends SIGTERM to the PID given; the app stops gracefully."""
    port = procs.free_port()
    app = start_app(nacos.addr, port, 5)
    try:
        assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)
        rc, events = drain(
            {**_env(nacos.addr, port), "PRESTOP_BUDGET": "10"},
            "--shutdown",
            "signal",
            "--signal-target",
            str(app.pid),
        )
        assert rc == 0, events[-1]
        assert events[-1]["phases"]["shutdown"]["how"] == "signal"
        assert app.wait(30) == 0
        assert "DEMO_APP_STOPPED" in app.lines
    finally:
        app.kill()


def test_status_command(nacos: NacosEmulator) -> None:
    """`prestop status` prints the admin and consumer views as JSON."""
    nacos.register("demo", "127.0.0.1", 8080, weight=2.5)
    assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)  # pushed to consumers
    result = cli("status", _env(nacos.addr, 8080))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["registered"] is True
    assert info["consumer_visible"] is True
    assert info["admin_view"]["weight"] == 2.5
    assert "pw" not in result.stdout + result.stderr


def test_down_and_up_for_maintenance(nacos: NacosEmulator) -> None:
    """`prestop down` takes the instance out without stopping the app; `up` puts it back."""
    nacos.register("demo", "127.0.0.1", 8080, weight=3.0, metadata={"zone": "a"})
    assert procs.wait_for(lambda: nacos.consumer_view("demo"), 30)  # pushed to consumers
    for command, enabled in (("down", False), ("up", True)):
        result = cli(command, _env(nacos.addr, 8080))
        assert result.returncode == 0, result.stderr
        (inst,) = nacos.admin_view("demo")
        assert (inst["enabled"], inst["weight"], inst["metadata"]) == (enabled, 3.0, {"zone": "a"})
        # The next command reads what consumers are served: wait for the push to show this one.
        assert procs.wait_for(lambda e=enabled: bool(nacos.consumer_view("demo")) is e, 30)
