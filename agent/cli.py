"""The ``prestop`` command line: declares options, builds the config, maps outcomes to exit codes.

Exit codes: 0 done; 1 unexpected error; 2 bad input or config (nothing touched);
3 done but degraded (registry unreachable or refused us, or the app did not stop).
Every option can also come from ``PRESTOP_<NAME>``; see :mod:`agent.config` for the fallbacks.
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
from agent.exceptions import AgentError, ConfigError

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DEGRADED = 0, 1, 2, 3

F = TypeVar("F", bound=Callable[..., Any])


def _opt(name: str, help_text: str, **kwargs: Any) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    env = "PRESTOP_" + name.upper()
    return click.option(flag, name, default=None, help=f"{help_text} [env: {env}]", **kwargs)


def registry_options(fn: F) -> F:
    options = [
        _opt(
            "nacos_addr",
            "Nacos host:port[,host:port...], optional http(s):// and context path. "
            "Falls back to NACOS_SERVER_ADDR / SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR.",
        ),
        _opt("context_path", "Context path when the address has none (default /nacos)."),
        _opt(
            "registry",
            "nacos or eureka (default: whichever is configured).",
            type=click.Choice(["nacos", "eureka"]),
        ),
        _opt(
            "eureka_url",
            "Eureka service URL(s), comma-separated, e.g. http://eureka:8761/eureka/; "
            "user:password@ becomes a Basic header. Falls back to "
            "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE.",
        ),
        _opt(
            "instance_id",
            "Eureka instance id (falls back to EUREKA_INSTANCE_INSTANCE_ID; default: found by "
            "IP and port).",
        ),
        _opt("namespace", "Namespace id (default public)."),
        _opt("group", "Group (default DEFAULT_GROUP)."),
        _opt("cluster", "Cluster (default DEFAULT)."),
        _opt(
            "service",
            "Service (Nacos) or app (Eureka) name; falls back to EUREKA_INSTANCE_APPNAME, "
            "SPRING_APPLICATION_NAME.",
        ),
        _opt("ip", "The instance's IP (falls back to POD_IP, then podip)."),
        _opt("port", "The instance's port (falls back to SERVER_PORT, then 8080)."),
        _opt("username", "Nacos username (falls back to NACOS_USERNAME)."),
        _opt("password", "Nacos password; prefer --password-file or NACOS_PASSWORD."),
        _opt("password_file", "File holding the Nacos password (e.g. a mounted Secret)."),
        _opt("http_timeout", "Most seconds one HTTP call may take (default 3)."),
        _opt("budget", "Most seconds the whole command may take (default 25)."),
        _opt("log_format", "auto (JSON unless a TTY), json or console."),
        _opt("log_level", "debug, info (default), warning or error."),
        click.option(
            "--log-to-pid1/--no-log-to-pid1",
            "log_to_pid1",
            default=None,
            help="Also write log lines to PID 1's stdout so they reach `kubectl logs` "
            "(default on). [env: PRESTOP_LOG_TO_PID1]",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def drain_options(fn: F) -> F:
    options = [
        _opt("actuator_url", "Actuator base URL (default http://127.0.0.1:<port>/actuator)."),
        _opt("metrics_url", "Prometheus endpoint (default <actuator-url>/prometheus)."),
        _opt(
            "shutdown",
            "How to stop the app: actuator (POST /shutdown), signal (SIGTERM) or none.",
            type=click.Choice(["actuator", "signal", "none"]),
        ),
        _opt("signal_target", "PID or process name to SIGTERM with --shutdown signal (default 1)."),
        _opt("min_wait", "Never drain for less than this many seconds (default 2)."),
        _opt("max_wait", "Never drain for more than this many seconds (default 60)."),
        _opt(
            "quiet_window",
            "Seconds without a new request that count as quiet; 'auto' (default) derives it "
            "from the request rate before the take-out.",
        ),
        _opt("confidence", "Auto window: accepted chance that a silence is luck (0.001)."),
        _opt("quiet_floor", "Auto window: shortest quiet window in seconds (0.3)."),
        _opt("quiet_cap", "Auto window: longest quiet window in seconds (30)."),
        _opt("poll_interval", "Seconds between traffic samples (default 0.25)."),
        _opt(
            "signals",
            "Traffic signals: auto (Prometheus, else actuator metrics, plus the kernel's socket "
            "table when readable), or a list of prometheus,actuator,kernel.",
        ),
        _opt("shutdown_timeout", "Seconds kept at the end for the app to stop (default 5)."),
        _opt("confirm_timeout", "Most seconds to wait for consumers' view to drop us (10)."),
        _opt("requests_metric", "Prometheus counter of served requests (Spring Boot's name)."),
        _opt("in_flight_metric", "Prometheus gauge of requests in flight (Spring Boot's name)."),
        _opt(
            "consumer_actuator",
            "Tell the consumers (Nacos): each subscriber's actuator as a URL template, e.g. "
            "http://{ip}:8081/actuator ({port}: the port the registry reports). Once its "
            "nacosdiscovery view drops us, its load-balancer cache is evicted; when every "
            "subscriber let go the drain ends as soon as nothing is in flight. Default off.",
        ),
        _opt("consumer_port", "Shorthand: --consumer-actuator http://{ip}:PORT/actuator."),
        _opt("consumer_auth_file", "File holding user:password for the consumers' actuators."),
        _opt(
            "consumer_settle",
            "Seconds after every consumer let go, for requests already on the wire (0.2).",
        ),
        _opt(
            "consumer_staleness",
            "Seconds a consumer may still route to the instance after the take-out, for the "
            "budget arithmetic (default: Nacos 35.5, Eureka 95).",
        ),
        click.option(
            "--dry-run/--no-dry-run",
            "dry_run",
            default=None,
            help="Say what would be done; touch nothing. [env: PRESTOP_DRY_RUN]",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def json_option(fn: F) -> F:
    option = click.option(
        "--json",
        "as_json",
        is_flag=True,
        default=False,
        help="Print one JSON object on stdout (the default when stdout is not a terminal).",
    )
    return option(fn)


def _print(text: str) -> None:
    """stdout for people or scripts; a secret a server echoed back is masked as in the logs."""
    from agent.logs import redact

    click.echo(redact(text))


def _wants_json(as_json: bool) -> bool:
    from agent.render import stdout_is_terminal

    return as_json or not stdout_is_terminal()


def _warn_budget(cfg: Any, log: Any) -> None:
    """The start-up warning when --budget is shorter than `prestop check`'s arithmetic."""
    from agent.render import budget_below_plan

    short = budget_below_plan(cfg)
    if short is not None:
        log.warning("budget_below_plan", **short)


def _fail_config(exc: ConfigError) -> NoReturn:
    click.echo(f"prestop: error: {exc}", err=True)
    sys.exit(EXIT_CONFIG)


def _load(flags: dict[str, Any]) -> Any:
    from agent import config, logs

    try:
        cfg = config.load(flags, os.environ)
    except ConfigError as exc:
        _fail_config(exc)
    logs.configure(
        log_format=cfg.log_format,
        # A dry run changes nothing: it has nothing to tell the pod's log.
        to_pid1=cfg.log_to_pid1 and not cfg.dry_run,
        level=logs.level_of(cfg.log_level),
    )
    if cfg.unknown_env:
        # Names only: a value could be a secret.
        logs.get_logger().warning("config_unknown_env", names=list(cfg.unknown_env))
    return cfg


def _check_budget(cfg: Any) -> None:
    from agent import config

    try:
        config.check_drain_budget(cfg)
    except ConfigError as exc:
        _fail_config(exc)


class _PluginGroup(click.Group):
    """Commands of other distributions (the lab's ``prestop lab``), loaded only when invoked.

    The agent never imports them by name: its wheel, images and binary carry none of their
    code, and ``drain`` or ``serve`` never pay for importing them.
    """

    @staticmethod
    def _plugins() -> dict[str, Any]:
        from importlib.metadata import entry_points

        return {e.name: e for e in entry_points(group="prestop.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        entry = None if command is not None else self._plugins().get(cmd_name)
        if entry is None:
            return command
        try:
            loaded = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the agent
            click.echo(f"prestop: warning: plugin {cmd_name!r} not loaded: {exc}", err=True)
            return None
        return loaded if isinstance(loaded, click.Command) else None


@click.group(
    cls=_PluginGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="prestop")
def cli() -> None:
    """Take a pod's instance out of Nacos, drain it, then stop the app: zero lost requests."""


@cli.command()
@registry_options
@drain_options
@json_option
def drain(as_json: bool, **flags: Any) -> None:
    """The preStop sequence: take out, confirm, drain, shut the app down (exit 0/2/3)."""
    from agent import wiring
    from agent.logs import get_logger
    from agent.sequence import run_drain

    cfg = _load(flags)
    _check_budget(cfg)
    log = get_logger(command="drain", instance=cfg.instance, service=cfg.service)
    log.info("config_loaded", **cfg.redacted())
    _warn_budget(cfg, log)
    if cfg.dry_run:
        _dry_run(cfg, log, as_json)
    with wiring.build(cfg) as resources:
        outcome = run_drain(resources.deps, resources.plan)
    log.info("prestop_summary", **outcome.summary())
    if as_json:
        from agent.render import dumps

        _print(dumps(outcome.summary()))
    sys.exit(outcome.exit_code)


def _dry_run(cfg: Any, log: Any, as_json: bool) -> NoReturn:
    from agent.render import drain_plan, dumps, plan_lines

    plan = drain_plan(cfg)
    log.info("dry_run_plan", steps=plan["steps"], warnings=[w["name"] for w in plan["warnings"]])
    _print(dumps(plan) if _wants_json(as_json) else "\n".join(plan_lines(plan)))
    log.info("prestop_summary", outcome="dry_run", exit_code=EXIT_OK)
    sys.exit(EXIT_OK)


def _state_dir_option() -> Callable[[F], F]:
    return _opt(
        "state_dir",
        "Directory (an emptyDir) for the record of who took the instance out, so that a "
        "restarted sidecar leaves `prestop down` alone. Default: none kept.",
    )


def sidecar_options(fn: F) -> F:
    options = [
        _opt("listen", "host:port to serve on (default 0.0.0.0:9901: kubelet calls the pod IP)."),
        _opt(
            "token_file",
            "File with the token /prestop requires in the X-Prestop-Token header "
            "(or env PRESTOP_TOKEN).",
        ),
        _opt("health_url", "The app's health URL (default <actuator-url>/health)."),
        _opt("warmup", "Seconds to raise the weight to its target after start-up (0: off)."),
        _opt("warmup_start_weight", "Weight the warm-up starts from (default 0.1)."),
        _opt("warmup_curve", "quadratic (default) or linear."),
        _opt("term_linger", "Seconds to keep serving after SIGTERM for the hook to arrive (2)."),
        _opt(
            "startup_hold",
            "on: take the new instance out as soon as it registers and put it back once the app "
            "is healthy (+ --ready-url, + --startup-delay). Default off; on when either is set.",
        ),
        _opt("startup_delay", "Seconds the app must stay healthy before it is put in (0)."),
        _opt("ready_url", "The app's own readiness URL; the hold lasts until it answers 2xx."),
        _state_dir_option(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@registry_options
@drain_options
@sidecar_options
def serve(**flags: Any) -> None:
    """Sidecar: serve /prestop (httpGet preStop), /readyz, /healthz and /metrics."""
    import signal
    import threading

    from agent import config, wiring
    from agent.logs import get_logger
    from agent.sidecar import serve as serve_forever

    cfg = _load(flags)
    _check_budget(cfg)
    try:
        side = config.load_sidecar(flags, os.environ, cfg)
    except ConfigError as exc:
        _fail_config(exc)
    log = get_logger(command="serve", instance=cfg.instance, service=cfg.service)
    log.info("config_loaded", **cfg.redacted(), listen=f"{side.host}:{side.port}")
    _warn_budget(cfg, log)
    sidecar = wiring.build_sidecar(cfg, side)
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    signal.signal(signal.SIGINT, lambda *_: terminated.set())
    try:
        serve_forever(sidecar, side.host, side.port, terminated)
    except OSError as exc:  # the bind: the address is in use or not this pod's
        _fail_config(
            ConfigError(
                f"--listen {side.host}:{side.port}: cannot listen ({exc.strerror or exc}); "
                "give a free port on an address of this pod, e.g. 0.0.0.0:9901"
            )
        )
    sys.exit(EXIT_OK)


@cli.command()
@registry_options
@drain_options
@sidecar_options
def ready(**flags: Any) -> None:
    """Readiness check for an exec probe: app healthy and visible to consumers (exit 0/1)."""
    from agent import config, wiring

    cfg = _load(flags)
    try:
        side = config.load_sidecar(flags, os.environ, cfg, require_token=False)
    except ConfigError as exc:
        _fail_config(exc)
    with wiring.build_sidecar(cfg, side) as sidecar:
        ok, reasons = sidecar.readiness()
    click.echo(json.dumps({"ready": ok, "reasons": reasons}))
    sys.exit(EXIT_OK if ok else EXIT_ERROR)


def _registry_command(flags: dict[str, Any], command: str) -> tuple[Any, Any, Any, Any]:
    from agent import wiring
    from agent.deadline import Deadline, SystemClock
    from agent.logs import get_logger

    cfg = _load(flags)
    clock = SystemClock()
    http = wiring.http_client()
    registry = wiring.registry_for(cfg, http, clock)
    log = get_logger(command=command, instance=cfg.instance, service=cfg.service)
    return registry, Deadline.after(clock, cfg.budget), log, http


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
        if _wants_json(as_json):
            _print(dumps({**failed, "error": error, "error_type": type(exc).__name__}))
        else:
            _print(f"{command}: {registry.describe_instance()}: not changed ({error})")
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
    _print(dumps(out) if _wants_json(as_json) else switch_line(out))
    sys.exit(EXIT_OK)


def _hold_file(state: dict[str, Any], flags: dict[str, Any], log: Any) -> Any:
    """The hold record when --state-dir is set (bad dir: exit 2, nothing touched)."""
    from agent import config
    from agent.holdstate import HoldFile

    try:
        directory = config.load_state_dir(state, os.environ)
    except ConfigError as exc:
        _fail_config(exc)
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


@cli.command()
@registry_options
@json_option
@_state_dir_option()
def up(as_json: bool, **flags: Any) -> None:
    """Put the instance back in service (enabled=true), keeping weight and metadata."""
    _switch(flags, True, as_json)


@cli.command()
@registry_options
@json_option
@_state_dir_option()
def down(as_json: bool, **flags: Any) -> None:
    """Take the instance out of service for maintenance, without stopping the app."""
    _switch(flags, False, as_json)


@cli.command()
@registry_options
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
    if _wants_json(as_json):
        _print(json.dumps(info, indent=2, sort_keys=True))
    else:
        _print("\n".join(status_lines(info)))
    sys.exit(EXIT_OK)


@cli.command()
@registry_options
@drain_options
@click.option(
    "--grace",
    "grace",
    default=None,
    help="The pod's terminationGracePeriodSeconds, to check against --budget. [env: PRESTOP_GRACE]",
)
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
    deadline = Deadline.after(clock, cfg.budget)
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
        checks.grace_needs(cfg, registry.name),
        budget=cfg.budget,
        max_wait=cfg.max_wait,
        grace=cfg.grace,
    )
    _print_findings(findings, as_json)
    sys.exit(checks.exit_code(findings))


def _weights_findings(checks: Any, registry: str) -> list[Any]:
    """The sidecar's warm-up and hold as its env sets them (check has no sidecar flags)."""
    from agent import config

    try:
        warmup = float(os.environ.get("PRESTOP_WARMUP", "0") or 0)
        hold_on, _, _ = config.startup_hold_of({}, os.environ)
    except (ValueError, ConfigError):
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
        _fail_config(exc)
    except Exception as exc:  # noqa: BLE001 - the one place that maps the unexpected to exit 1
        from agent.logs import get_logger

        get_logger().exception("unexpected_error", error=str(exc), error_type=type(exc).__name__)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
