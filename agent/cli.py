"""The ``prestop`` command line: declares options, builds the config, maps outcomes to exit codes.

Exit codes: 0 done; 1 unexpected error; 2 bad input or config (nothing touched);
3 done but degraded (registry unreachable or refused us, or the app did not stop).
The options are generated from their one declaration in :mod:`agent.config.options`; every
option can also come from ``PRESTOP_<NAME>`` and the app's own variables listed there.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from agent import __version__
from agent.cli_support import (
    EXIT_CONFIG,
    EXIT_DEGRADED,
    EXIT_ERROR,
    EXIT_OK,
    PluginGroup,
    check_budget,
    emit,
    fail_config,
    load_config,
    wants_json,
    warn_budget,
)
from agent.config.flags import GroupedCommand, options
from agent.exceptions import AgentError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    option = click.option(
        "--json",
        "as_json",
        is_flag=True,
        default=False,
        help="Print one JSON object on stdout (the default when stdout is not a terminal).",
    )
    return option(fn)


@click.group(
    cls=PluginGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="prestop")
def cli() -> None:
    """Take a pod's instance out of Nacos, drain it, then stop the app: zero lost requests."""


@cli.command(cls=GroupedCommand)
@options("registry", "drain")
@json_option
def drain(as_json: bool, **flags: Any) -> None:
    """The preStop sequence: take out, confirm, drain, shut the app down (exit 0/2/3)."""
    from agent import wiring
    from agent.logs import get_logger
    from agent.sequence import run_drain

    cfg = load_config(flags)
    check_budget(cfg)
    log = get_logger(command="drain", instance=cfg.instance, service=cfg.service)
    log.info("config_loaded", **cfg.redacted())
    warn_budget(cfg, log)
    if cfg.dry_run:
        _dry_run(cfg, log, as_json)
    with wiring.build(cfg) as resources:
        outcome = run_drain(resources.deps, resources.plan)
    log.info("prestop_summary", **outcome.summary())
    if as_json:
        from agent.render import dumps

        emit(dumps(outcome.summary()))
    sys.exit(outcome.exit_code)


def _dry_run(cfg: Any, log: Any, as_json: bool) -> NoReturn:
    from agent.render import drain_plan, dumps, plan_lines

    plan = drain_plan(cfg)
    log.info("dry_run_plan", steps=plan["steps"], warnings=[w["name"] for w in plan["warnings"]])
    emit(dumps(plan) if wants_json(as_json) else "\n".join(plan_lines(plan)))
    log.info("prestop_summary", outcome="dry_run", exit_code=EXIT_OK)
    sys.exit(EXIT_OK)


@cli.command(cls=GroupedCommand)
@options("registry", "drain", "sidecar", "state")
def serve(**flags: Any) -> None:
    """Sidecar: serve /prestop (httpGet preStop), /readyz, /healthz and /metrics."""
    import signal
    import threading

    from agent import config, wiring
    from agent.logs import get_logger
    from agent.sidecar import serve as serve_forever

    cfg = load_config(flags)
    check_budget(cfg)
    try:
        side = config.load_sidecar(flags, os.environ, cfg)
    except ConfigError as exc:
        fail_config(exc)
    log = get_logger(command="serve", instance=cfg.instance, service=cfg.service)
    log.info("config_loaded", **cfg.redacted(), listen=f"{side.host}:{side.port}")
    warn_budget(cfg, log)
    sidecar = wiring.build_sidecar(cfg, side)
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    signal.signal(signal.SIGINT, lambda *_: terminated.set())
    try:
        serve_forever(sidecar, side.host, side.port, terminated)
    except OSError as exc:  # the bind: the address is in use or not this pod's
        fail_config(
            ConfigError(
                f"--listen {side.host}:{side.port}: cannot listen ({exc.strerror or exc}); "
                "give a free port on an address of this pod, e.g. 0.0.0.0:9901"
            )
        )
    sys.exit(EXIT_OK)


@cli.command(cls=GroupedCommand)
@options("registry", "drain", "sidecar", "state")
def ready(**flags: Any) -> None:
    """Readiness check for an exec probe: app healthy and visible to consumers (exit 0/1)."""
    from agent import config, wiring

    cfg = load_config(flags)
    try:
        side = config.load_sidecar(flags, os.environ, cfg, require_token=False)
    except ConfigError as exc:
        fail_config(exc)
    with wiring.build_sidecar(cfg, side) as sidecar:
        ok, reasons = sidecar.readiness()
    click.echo(json.dumps({"ready": ok, "reasons": reasons}))
    sys.exit(EXIT_OK if ok else EXIT_ERROR)


def _registry_command(flags: dict[str, Any], command: str) -> tuple[Any, Any, Any, Any]:
    from agent import wiring
    from agent.deadline import Deadline, SystemClock
    from agent.logs import get_logger

    cfg = load_config(flags)
    clock = SystemClock()
    http = wiring.http_client()
    registry = wiring.registry_for(cfg, http, clock)
    log = get_logger(command=command, instance=cfg.instance, service=cfg.service)
    return registry, Deadline.for_budget(clock, cfg.budget), log, http


def _switch(flags: dict[str, Any], enabled: bool, as_json: bool) -> None:
    from agent.exceptions import RegistryError
    from agent.render import dumps, switch_line, switch_result
    from agent.retrying import call_with_retries
    from agent.sequence import describe_error

    command = "up" if enabled else "down"
    state_dir = flags.pop("state_dir", None)
    registry, deadline, log, http = _registry_command(flags, command)
    holds = _hold_file({"state_dir": state_dir}, flags, log)
    if holds is not None and not enabled:
        # Written before the take-out: a sidecar ending its start-up hold reads it first.
        _write_hold(holds, log)
    try:
        fn = registry.put_back if enabled else registry.take_out
        result = call_with_retries(lambda: fn(deadline), deadline)
    except (RegistryError, AgentError) as exc:
        http.close()
        log.error(f"{command}_failed", error=str(exc), error_type=type(exc).__name__)
        log.info("prestop_summary", outcome="degraded", exit_code=EXIT_DEGRADED)
        failed = {"command": command, "outcome": "degraded", "exit_code": EXIT_DEGRADED}
        error = describe_error(exc)
        if wants_json(as_json):
            emit(dumps({**failed, "error": error, "error_type": type(exc).__name__}))
        else:
            emit(f"{command}: {registry.describe_instance()}: not changed ({error})")
        sys.exit(EXIT_DEGRADED)
    http.close()
    if holds is not None and enabled:
        _write_hold(holds, log, clear=True)
    log.info(
        "prestop_summary",
        outcome="ok",
        exit_code=EXIT_OK,
        enabled=enabled,
        method=result.method,
        weight=result.before.weight,
        server_version=result.server_version,
        already=result.already_out,
        write_unconfirmed=result.write_unconfirmed,
    )
    out = switch_result(command, enabled, result, registry.describe_instance(), registry.name)
    emit(dumps(out) if wants_json(as_json) else switch_line(out))
    sys.exit(EXIT_OK)


def _hold_file(state: dict[str, Any], flags: dict[str, Any], log: Any) -> Any:
    """The hold record when --state-dir is set (bad dir: exit 2, nothing touched)."""
    from agent import config
    from agent.holdstate import HoldFile

    try:
        directory = config.load_state_dir(state, os.environ)
    except ConfigError as exc:
        fail_config(exc)
    if directory is None:
        return None
    # Already loaded without error by the caller: this only reads the instance's ip:port.
    instance = config.load(flags, os.environ).instance
    return HoldFile(directory, instance)


def _write_hold(holds: Any, log: Any, clear: bool = False) -> None:
    try:
        if clear:
            holds.clear()
        else:
            holds.write("operator", "prestop down")
    except OSError as exc:
        # The registry write still happens; only a restarted sidecar could not tell whose it is.
        log.warning("hold_state_write_failed", error=str(exc), path=str(holds.path))


@cli.command(cls=GroupedCommand)
@options("registry", "state")
@json_option
def up(as_json: bool, **flags: Any) -> None:
    """Put the instance back in service (enabled=true), keeping weight and metadata."""
    _switch(flags, True, as_json)


@cli.command(cls=GroupedCommand)
@options("registry", "state")
@json_option
def down(as_json: bool, **flags: Any) -> None:
    """Take the instance out of service for maintenance, without stopping the app."""
    _switch(flags, False, as_json)


@cli.command(cls=GroupedCommand)
@options("registry")
@json_option
def status(as_json: bool, **flags: Any) -> None:
    """Print what the registry shows for this instance, as admins and as consumers see it."""
    from agent.render import status_lines

    registry, deadline, log, http = _registry_command(flags, "status")
    try:
        info = registry.status(deadline)
    except AgentError as exc:
        log.error("status_failed", error=str(exc), error_type=type(exc).__name__)
        sys.exit(EXIT_DEGRADED)
    finally:
        http.close()
    if wants_json(as_json):
        emit(json.dumps(info, indent=2, sort_keys=True))
    else:
        emit("\n".join(status_lines(info)))
    sys.exit(EXIT_OK)


@cli.command(cls=GroupedCommand)
@options("registry", "drain", "check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
def check(as_json: bool, **flags: Any) -> None:
    """Preflight: config, registry login, instance, actuator, signals, grace arithmetic."""
    import logging

    from agent import check as checks
    from agent import config, logs, wiring
    from agent.deadline import Deadline, SystemClock
    from agent.shutdown import find_pids

    try:
        cfg = config.load(flags, os.environ)
    except ConfigError as exc:
        findings = [checks.Finding("config", "fail", str(exc))]
        _print_findings(findings, as_json)
        sys.exit(EXIT_CONFIG)
    # The findings are the output: log lines only for what they cannot say.
    logs.configure(log_format=cfg.log_format, to_pid1=False, level=logging.ERROR)
    findings = [checks.Finding("config", "ok", f"valid; {cfg.registry} instance {cfg.instance}")]
    clock = SystemClock()
    deadline = Deadline.for_budget(clock, cfg.budget)
    registry_http, app_http = wiring.http_client(), wiring.http_client()
    try:
        registry = wiring.registry_for(cfg, registry_http, clock)
        findings += checks.registry_findings(registry, deadline)
        tracker = wiring.consumer_tracker(cfg, registry)
        try:
            findings += checks.consumer_findings(tracker, deadline)
        finally:
            if tracker is not None:
                tracker.http.close()
        findings += checks.app_findings(
            cfg, app_http, deadline, wiring.check_signals(cfg, app_http), find_pids
        )
    finally:
        registry_http.close()
        app_http.close()
        # Logging is process-wide: leave it as every other command sets it up.
        logs.configure(log_format=cfg.log_format, to_pid1=False, level=logs.level_of(cfg.log_level))
    findings += _weights_findings(checks, registry.name)
    findings += checks.grace_findings(
        checks.grace_needs(cfg),
        budget=cfg.budget,
        max_wait=cfg.max_wait,
        grace=cfg.grace,
    )
    _print_findings(findings, as_json)
    sys.exit(checks.exit_code(findings))


def _weights_findings(checks: Any, registry: str) -> list[Any]:
    """The sidecar's warm-up and hold as its env sets them (check has no sidecar flags)."""
    from agent import config
    from agent.config.values import lookup, seconds

    try:
        warmup = seconds("warmup", lookup({}, os.environ))
        hold_on, _, _ = config.startup_hold_of({}, os.environ)
    except ConfigError:
        warmup, hold_on = 0.0, False
    return list(checks.weights_findings(registry, warmup, hold_on))


def _print_findings(findings: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"findings": [f.__dict__ for f in findings]}))
        return
    for finding in findings:
        click.echo(finding.line())
    counts = {level: sum(f.level == level for f in findings) for level in ("ok", "warn", "fail")}
    click.echo(f"check: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")


@cli.command(name="install")
@click.argument("dest", type=click.Path(path_type=Path))
def install_cmd(dest: Path) -> None:
    """Copy this standalone binary into DEST (an emptyDir shared with the app container)."""
    from agent.install import install

    installed = install(dest)
    click.echo(json.dumps({"event": "installed", "path": str(installed)}))
    sys.exit(EXIT_OK)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: one-line errors for bad usage (exit 2), exit 1 for the unexpected."""
    try:
        cli.main(args=argv, prog_name="prestop", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        click.echo(f"prestop: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        fail_config(exc)
    except Exception as exc:  # noqa: BLE001 - the one place that maps the unexpected to exit 1
        from agent.logs import get_logger

        get_logger().exception("unexpected_error", error=str(exc), error_type=type(exc).__name__)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
