"""What every ``prestop`` command shares: output, config loading, the one-line error, plugins."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from agent.exceptions import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DEGRADED = 0, 1, 2, 3


def emit(text: str) -> None:
    """stdout for people or scripts; a secret a server echoed back is masked as in the logs."""
    from agent.logs import redact

    click.echo(redact(text))


def wants_json(as_json: bool) -> bool:
    from agent.render import stdout_is_terminal

    return as_json or not stdout_is_terminal()


def warn_budget(cfg: Any, log: Any) -> None:
    """The start-up warning when --budget is shorter than `prestop check`'s arithmetic."""
    from agent.render import budget_below_plan

    short = budget_below_plan(cfg)
    if short is not None:
        log.warning("budget_below_plan", **short)


def fail_config(exc: ConfigError) -> NoReturn:
    click.echo(f"prestop: error: {exc}", err=True)
    sys.exit(EXIT_CONFIG)


def load_config(flags: dict[str, Any]) -> Any:
    from agent import config, logs

    try:
        cfg = config.load(flags, os.environ)
    except ConfigError as exc:
        fail_config(exc)
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


def check_budget(cfg: Any) -> None:
    from agent import config

    try:
        config.check_drain_budget(cfg)
    except ConfigError as exc:
        fail_config(exc)


class PluginGroup(click.Group):
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
