"""What `drain --dry-run`, `status`, `up` and `down` print: lines on a terminal, JSON otherwise.

The registry is the in-memory Nacos/Eureka of :mod:`tests.faultlab` behind httpx.MockTransport,
so the commands run in-process, end to end, without sockets.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from agent import deadline, render, wiring
from agent.cli import cli
from tests.fakes import FakeClock
from tests.faultlab import RegistryKind, World

NACOS_ENV = {
    "PRESTOP_NACOS_ADDR": "nacos:8848",
    "PRESTOP_SERVICE": "orders",
    "POD_IP": "10.0.0.5",
    "SERVER_PORT": "8080",
    "PRESTOP_LOG_FORMAT": "json",
}
EUREKA_ENV = {
    "PRESTOP_EUREKA_URL": "http://eureka:8761/eureka/",
    "PRESTOP_SERVICE": "orders",
    "POD_IP": "10.0.0.5",
    "SERVER_PORT": "8080",
    "PRESTOP_LOG_FORMAT": "json",
}


@pytest.fixture(name="terminal")
def fixture_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout is a terminal (CliRunner's is not)."""
    monkeypatch.setattr(render, "stdout_is_terminal", lambda stream=None: True)


def _world(
    monkeypatch: pytest.MonkeyPatch, kind: RegistryKind = "nacos", enabled: bool = True
) -> World:
    world = World(FakeClock(), registry_kind=kind, enabled=enabled)

    def client(*, tls: bool = True) -> httpx.Client:
        return world.client()

    monkeypatch.setattr(wiring, "http_client", client)
    # status/up/down build their own SystemClock: on the world's clock their retries take no time.
    monkeypatch.setattr(deadline, "SystemClock", lambda: world.clock)
    return world


def invoke(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# --- status ---


def test_status_json_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped (or --json): the same JSON object as before, every key kept."""
    _world(monkeypatch)
    result = invoke("status", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["registered"] is True
    assert info["consumer_visible"] is True
    assert info["admin_view"]["weight"] == 2.0
    assert {"registry", "server_version", "service", "namespace", "instance"} <= set(info)
    assert '"registered": true' in result.stdout  # what scripts grep for


def test_status_json_flag_wins_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, terminal: None
) -> None:
    _world(monkeypatch)
    result = invoke("status", "--json", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["registered"] is True


def test_status_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch, terminal: None) -> None:
    _world(monkeypatch, enabled=False)
    result = invoke("status", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "10.0.0.5:8080 in DEFAULT_GROUP@@orders (namespace public), Nacos 2.3.1"
    assert "OUT OF SERVICE" in result.stdout
    assert "weight 2," in result.stdout
    assert lines[-1].split() == ["consumers", "see", "no"]
    assert "{" not in result.stdout


def test_eureka_status_lines(monkeypatch: pytest.MonkeyPatch, terminal: None) -> None:
    _world(monkeypatch, "eureka", enabled=False)
    result = invoke("status", env=EUREKA_ENV)
    assert result.exit_code == 0, result.output
    assert "app ORDERS in Eureka, instance pod-1:orders:8080" in result.stdout
    assert "server         http://eureka:8761/eureka/ OUT_OF_SERVICE" in result.stdout
    assert "consumers see  no" in result.stdout


# --- up / down ---


@pytest.mark.parametrize("kind", ["nacos", "eureka"])
def test_down_then_up_say_what_changed(
    monkeypatch: pytest.MonkeyPatch, terminal: None, kind: RegistryKind
) -> None:
    world = _world(monkeypatch, kind)
    env = NACOS_ENV if kind == "nacos" else EUREKA_ENV
    down = invoke("down", env=env)
    assert down.exit_code == 0, down.output
    assert world.enabled is False
    (line,) = down.stdout.splitlines()
    assert line.startswith("down: ")
    assert "in service -> out of service" in line
    again = invoke("down", env=env)
    assert "already out of service; nothing changed" in again.stdout
    up = invoke("up", env=env)
    assert "out of service -> in service" in up.stdout
    assert world.enabled is True


@pytest.mark.parametrize("kind", ["nacos", "eureka"])
def test_down_whose_answer_was_lost_says_so(
    monkeypatch: pytest.MonkeyPatch, terminal: None, kind: RegistryKind
) -> None:
    """The write landed and its answer was lost: a change, read back, not "already"."""
    world = _world(monkeypatch, kind)
    write = "PATCH /nacos/v1/ns/instance"
    if kind == "eureka":
        write = "PUT /eureka/apps/ORDERS/pod-1:orders:8080/status"
    world.lost_answers[write] = 1
    down = invoke("down", env=NACOS_ENV if kind == "nacos" else EUREKA_ENV)
    assert down.exit_code == 0, down.output
    (line,) = down.stdout.splitlines()
    assert "in service -> out of service" in line
    assert "the answer was lost, the instance read back as written" in line
    summary = events(down.stderr)[-1]
    assert summary["write_unconfirmed"] is True and summary["already"] is False


def test_down_json_keeps_the_summary_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    _world(monkeypatch)
    result = invoke("down", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["before"] == {"enabled": True, "weight": 2.0}
    assert out["after"]["enabled"] is False
    assert out["changed"] is True
    assert {"method", "weight", "server_version", "already", "enabled"} <= set(out)
    summary = events(result.stderr)[-1]
    assert summary["event"] == "prestop_summary" and summary["enabled"] is False


def test_down_failure_exit_3_with_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at the registry: exit 3, JSON says degraded."""
    from tests.faultlab import Answer

    world = _world(monkeypatch)
    world.kind_faults["registry"] = Answer(status=503)
    result = invoke("down", env={**NACOS_ENV, "PRESTOP_BUDGET": "2"})
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["outcome"] == "degraded" and out["exit_code"] == 3


# --- drain --dry-run ---


def test_dry_run_plan_on_a_terminal(terminal: None) -> None:
    """The default budget: the plan says when the drain ends and that 25 s is short (use 50)."""
    result = invoke("drain", "--dry-run", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Dry run, nothing touched")
    assert "10.0.0.5:8080 of DEFAULT_GROUP@@orders" in out
    assert "the drain ends by 19.5 s (25 budget - 5 shutdown - 0.5 exit)" in out
    assert "at most 60 s (cut to 19.5 s by the budget)" in out
    assert "use --budget 50 and terminationGracePeriodSeconds: 55" in out
    assert "all within" not in out
    # The logs are still there, on stderr.
    names = [e["event"] for e in events(result.stderr)]
    assert names == ["config_loaded", "budget_below_plan", "dry_run_plan", "prestop_summary"]


def test_dry_run_json_when_piped() -> None:
    result = invoke("drain", "--dry-run", "--budget", "50", env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True
    assert plan["drain_ends_by_s"] == 44.5
    assert plan["warnings"] == []
    assert plan["use_budget"] == 50
    assert len(plan["steps"]) == 5
    assert "budget_below_plan" not in [e["event"] for e in events(result.stderr)]


def test_eureka_plan_clamps_max_wait_and_flags_the_budget(terminal: None) -> None:
    """Eureka's max-wait 105 s cannot fit in 25 s: the plan says so and gives the budget."""
    result = invoke("drain", "--dry-run", env=EUREKA_ENV)
    assert result.exit_code == 0, result.output
    assert "at most 105 s (cut to 19.5 s by the budget)" in result.stdout
    assert "--max-wait 105 s cannot be reached" in result.stdout
    assert "use --budget 109" in result.stdout
    assert "--confirm-timeout 35 s may use up the 19.5 s" in result.stdout
    warning = next(e for e in events(result.stderr) if e["event"] == "budget_below_plan")
    assert warning["level"] == "warning"
    assert (warning["needs_s"], warning["use_budget"], warning["use_grace"]) == (108.9, 109, 114)


def test_small_budget_plan_is_truthful() -> None:
    """A budget just above the minimum: the plan's numbers are the sequence's, not "all fits"."""
    args = ["--budget", "8", "--min-wait", "0.5", "--http-timeout", "1"]
    result = invoke("drain", "--dry-run", *args, env=NACOS_ENV)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["drain_ends_by_s"] == 2.5
    assert {w["name"] for w in plan["warnings"]} == {"max_wait", "confirm_timeout", "budget"}
    assert "cut to 2.5s by the budget" in plan["steps"][2]


@pytest.mark.parametrize("budget", ["5", "10"])
def test_dry_run_below_the_minimum_exits_2(budget: str) -> None:
    """--budget 5 (or 10) cannot hold one call + min-wait + poll + shutdown + exit (10.75 s): exit 2."""
    result = invoke("drain", "--dry-run", "--budget", budget, env=NACOS_ENV)
    assert result.exit_code == 2
    assert "give at least 10.75" in result.stderr
    assert result.stdout == ""


def test_consumer_staleness_silences_the_warning() -> None:
    """Consumers known to let go within 10 s: 25 s is enough, no warning."""
    env = {**NACOS_ENV, "PRESTOP_CONSUMER_STALENESS": "10"}
    result = invoke("drain", "--dry-run", "--max-wait", "19", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == []
    assert "budget_below_plan" not in result.stderr


def test_serve_warns_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` logs budget_below_plan before it listens (here the bind fails: exit 2)."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**NACOS_ENV, "PRESTOP_TOKEN": "t0ken-value"}
        result = invoke("serve", "--listen", f"127.0.0.1:{port}", env=env)
    assert result.exit_code == 2
    warning = next(e for e in events(result.stderr) if e["event"] == "budget_below_plan")
    assert warning["use_budget"] == 50


def test_budget_arithmetic_matches_check() -> None:
    """The dry run and drain's warning use check's numbers, not a copy of them."""
    from agent.check import grace_findings, grace_needs
    from agent.config import load

    cfg = load({}, NACOS_ENV)
    short = render.budget_below_plan(cfg)
    assert short is not None
    (finding, *_) = grace_findings(
        grace_needs(cfg), budget=cfg.budget, max_wait=cfg.max_wait, grace=None
    )
    assert finding.level == "fail"
    assert f"use --budget {short['use_budget']} " in finding.message
    assert f"terminationGracePeriodSeconds: {short['use_grace']}" in finding.message


@pytest.mark.parametrize("as_json", [True, False])
def test_a_password_echoed_by_the_registry_never_reaches_stdout(
    monkeypatch: pytest.MonkeyPatch, terminal: None, as_json: bool
) -> None:
    from tests.faultlab import Answer

    world = _world(monkeypatch)
    world.kind_faults["registry"] = Answer(status=400, body=b'{"password": "hunter2-secret"}')
    env = {
        **NACOS_ENV,
        "PRESTOP_BUDGET": "2",
        "NACOS_USERNAME": "nacos",
        "NACOS_PASSWORD": "hunter2-secret",
    }
    result = invoke("down", *(["--json"] if as_json else []), env=env)
    assert result.exit_code == 3
    assert result.stdout.startswith("{" if as_json else "down: ")
    assert "hunter2" not in result.stdout + result.stderr
