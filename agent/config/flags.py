"""The click options, generated from the option table, and ``--help`` in sections by concern.

Click only shows each value's type (FLOAT, INTEGER, ``[a|b]``) and passes the text through:
:func:`agent.config.load` parses it, so a bad value is the same one-line error naming the
field, its source and the fix, whether it came from a flag or from the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent.config.defaults import default_help
from agent.config.options import OPTIONS, OPTIONS_BY_NAME
from agent.config.spec import GROUPS, Kind, Option, Scope

F = TypeVar("F", bound=Callable[..., Any])

TYPE_NAMES: dict[Kind, str] = {
    "text": "text",
    "seconds": "float",
    "number": "float",
    "port": "integer",
    "choice": "choice",
    "switch": "boolean",
    "url": "url",
    "metric": "name",
    "file": "file",
}
OTHER = "Other options"


if TYPE_CHECKING:
    _TextType = click.ParamType[Any, Any]
else:  # click < 8.3 has no type parameters here
    _TextType = click.ParamType


class Shown(_TextType):
    """A type for --help only: the value stays text, checked by the config loader."""

    def __init__(self, name: str) -> None:
        self.name = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


def help_text(opt: Option) -> str:
    """The help line: what it does, its default (per registry when they differ), its env."""
    notes = [f"default: {shown}"] if (shown := default_help(opt)) else []
    notes.append("env: " + ", ".join((opt.env, *opt.app_env)))
    return f"{opt.help} [{'; '.join(notes)}]"


def metavar(opt: Option) -> str:
    if opt.metavar is not None:
        return opt.metavar
    if opt.choices:
        return "[" + "|".join(opt.choices) + "]"
    return TYPE_NAMES[opt.kind].upper()


def click_option(opt: Option) -> Callable[[F], F]:
    """The click option of one declaration (a switch is ``--x/--no-x``)."""
    if opt.kind == "switch":
        flags = f"{opt.flag}/--no-{opt.flag[2:]}"
        return click.option(flags, opt.name, default=None, help=help_text(opt))
    return click.option(
        opt.flag,
        opt.name,
        type=Shown(TYPE_NAMES[opt.kind]),
        default=None,
        metavar=metavar(opt),
        help=help_text(opt),
    )


def options(*scopes: Scope) -> Callable[[F], F]:
    """Every option of these scopes, in table order."""
    chosen = [o for o in OPTIONS if o.scope in scopes]

    def decorate(fn: F) -> F:
        for opt in reversed(chosen):
            fn = click_option(opt)(fn)
        return fn

    return decorate


class GroupedCommand(click.Command):
    """``--help`` with one section per concern (registry, drain, consumers ...)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {title: [] for title in GROUPS.values()}
        sections[OTHER] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            opt = OPTIONS_BY_NAME.get(param.name or "")
            sections[GROUPS[opt.group] if opt is not None else OTHER].append(record)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
