"""The CLI as a real subprocess: exit codes, one-line errors, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRESTOP_")}
    base["PRESTOP_LOG_TO_PID1"] = "false"
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
        check=False,
    )


ENV = {"PRESTOP_NACOS_ADDR": "127.0.0.1:1", "PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5"}


@pytest.mark.slow
def test_version() -> None:
    """--version prints the version and exits 0."""
    result = run("--version")
    assert result.returncode == 0
    assert "prestop" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["drain", "--port", "abc"], ENV, "--port 'abc': not a port number"),
        (["drain"], {**ENV, "PRESTOP_SERVICE": ""}, "--service: not set"),
        (["drain", "--password-file", "/nonexistent/pw", "--username", "u"], ENV, "cannot be read"),
        (["drain", "--shutdown", "kill"], ENV, "--shutdown"),
        (["drain", "--no-such-flag"], ENV, "no-such-flag"),
        (["up"], {**ENV, "PRESTOP_BUDGET": "soon"}, "--budget 'soon' from PRESTOP_BUDGET"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    """Bad input: exit 2 and exactly one line on stderr naming the field."""
    result = run(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("prestop: error: ")
    assert needle in lines[0]


@pytest.mark.slow
def test_dry_run_touches_nothing_and_hides_secrets() -> None:
    """--dry-run needs no registry, prints the plan and never the password."""
    env = {**ENV, "NACOS_USERNAME": "nacos", "NACOS_PASSWORD": "hunter2-secret"}
    result = run("drain", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "dry_run_plan" in events
    assert events[-1] == "prestop_summary"


def test_unknown_prestop_variable_is_warned_about(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prestop drain --dry-run` with PRESTOP_BUGDET set logs its name, never its value."""
    from agent.cli import main

    for name, value in {
        "PRESTOP_NACOS_ADDR": "127.0.0.1:1",
        "PRESTOP_SERVICE": "orders",
        "PRESTOP_IP": "10.0.0.5",
        "PRESTOP_BUGDET": "secret-looking-value",
        "PRESTOP_LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        main(["drain", "--dry-run"])
    err = capsys.readouterr().err
    assert "config_unknown_env" in err
    assert "PRESTOP_BUGDET" in err
    assert "secret-looking-value" not in err


@pytest.mark.slow
def test_serve_on_a_busy_port_is_one_line_exit_2() -> None:
    """`--listen` on an address that cannot be bound: one line naming --listen, no traceback."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "PRESTOP_NACOS_ADDR": "127.0.0.1:1",
            "PRESTOP_SERVICE": "orders",
            "PRESTOP_IP": "10.0.0.5",
            "PRESTOP_TOKEN": "t",
            "PRESTOP_LOG_TO_PID1": "false",
        }
        result = subprocess.run(
            [sys.executable, "-m", "agent", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert "--listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_drain_with_a_budget_too_short_exits_2_before_any_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--budget 4` would give up on the registry and stop an app still routed to: exit 2."""
    from agent.cli import main

    for name, value in {
        "PRESTOP_NACOS_ADDR": "127.0.0.1:1",
        "PRESTOP_SERVICE": "orders",
        "PRESTOP_IP": "10.0.0.5",
    }.items():
        monkeypatch.setenv(name, value)
    for argv in (["drain", "--budget", "4"], ["drain", "--budget", "4", "--dry-run"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        assert "--budget 4" in capsys.readouterr().err
