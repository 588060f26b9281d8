"""Raw values: where each came from, and the parsers that turn them into typed settings.

Every parser raises :class:`ConfigError` with one line naming the option, where the value came
from (``PRESTOP_PORT='abc'``) and the fix. :func:`parse` parses any option by its declared kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agent.config.defaults import default_of
from agent.config.options import OPTIONS_BY_NAME
from agent.config.spec import Option, RegistryKind, Scope, Value
from agent.exceptions import ConfigError


@dataclass(frozen=True)
class Resolved:
    """A raw value and where it came from, for error messages."""

    value: str
    source: str  # "--port", "PRESTOP_PORT", "SERVER_PORT" or "default"


Lookup = Callable[[str], "Resolved | None"]


def resolve(
    name: str, flags: Mapping[str, object | None], environ: Mapping[str, str]
) -> Resolved | None:
    """The raw value of one option from the first source that sets it (empty env is unset)."""
    opt = OPTIONS_BY_NAME[name]
    flag_value = flags.get(name)
    if flag_value is not None:
        if isinstance(flag_value, bool):
            return Resolved("true" if flag_value else "false", opt.flag)
        return Resolved(str(flag_value), opt.flag)
    for env in (opt.env, *opt.app_env):
        value = environ.get(env)
        if value is not None and value.strip() != "":
            return Resolved(value.strip(), env)
    return None


def lookup(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> Lookup:
    return lambda name: resolve(name, flags, environ)


def fail(opt: str, r: Resolved | None, problem: str, fix: str) -> ConfigError:
    flag = OPTIONS_BY_NAME[opt].flag if opt in OPTIONS_BY_NAME else opt
    where = ""
    if r is not None and r.source != "default":
        secret = opt in OPTIONS_BY_NAME and OPTIONS_BY_NAME[opt].secret
        shown = "<hidden>" if secret else repr(r.value)
        where = f" {shown} from {r.source}" if not r.source.startswith("--") else f" {shown}"
    return ConfigError(f"{flag}{where}: {problem}; {fix}")


def env_hint(opt: str) -> str:
    o = OPTIONS_BY_NAME[opt]
    return f"set {o.flag} or {o.env}"


def number(
    opt: str, r: Resolved | None, default: float, *, minimum: float = 0.0, allow_zero: bool = True
) -> float:
    if r is None:
        return default
    try:
        value = float(r.value)
    except ValueError:
        raise fail(opt, r, "not a number", f"give seconds as a number, e.g. {default:g}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise fail(opt, r, "not a finite number", f"give seconds as a number, e.g. {default:g}")
    if value < minimum or (not allow_zero and value == 0):
        bound = f"greater than {minimum:g}" if not allow_zero else f"at least {minimum:g}"
        raise fail(opt, r, f"must be {bound}", f"give seconds, e.g. {default:g}")
    return value


def boolean(opt: str, r: Resolved | None, default: bool) -> bool:
    if r is None:
        return default
    v = r.value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise fail(opt, r, "not a boolean", "use true or false")


# ASCII digits only: int() also takes "+80", " 80" and full-width digits, which no server does.
DIGITS = re.compile(r"[0-9]{1,5}")


def port(opt: str, r: Resolved | None, default: int) -> int:
    if r is None:
        return default
    if not DIGITS.fullmatch(r.value):
        raise fail(opt, r, "not a port number", "give an integer from 1 to 65535")
    value = int(r.value)
    if not 1 <= value <= 65535:
        raise fail(opt, r, "out of range", "give an integer from 1 to 65535")
    return value


def choice(opt: Option, r: Resolved) -> str:
    value = r.value.lower()
    if value not in opt.choices:
        *head, last = opt.choices
        raise fail(opt.name, r, f"unknown {opt.noun}", f"use {', '.join(head)} or {last}")
    return value


def metric(opt: str, r: Resolved | None, default: str) -> str:
    if r is None:
        return default
    if not r.value.replace("_", "a").replace(":", "a").isalnum() or r.value[0].isdigit():
        raise fail(opt, r, "is not a Prometheus metric name", "give e.g. " + default)
    return r.value


def parse(opt: Option, r: Resolved | None, registry: RegistryKind = "nacos") -> Value:
    """One option by its declared kind; unset: its default (for ``registry``)."""
    default = default_of(opt.name, registry)
    if opt.kind in ("seconds", "number"):
        # Only --grace has no default: Kubernetes' own grace period is the example.
        example = default if isinstance(default, float) else 30.0
        if r is None:
            return default
        return number(opt.name, r, example, minimum=opt.minimum, allow_zero=opt.allow_zero)
    if opt.kind == "port":
        return port(opt.name, r, default if isinstance(default, int) else 0) if r else default
    if opt.kind == "switch":
        return boolean(opt.name, r, bool(default))
    if r is None:
        return default
    if opt.kind == "choice":
        return choice(opt, r)
    if opt.kind == "metric":
        return metric(opt.name, r, str(default))
    if opt.kind == "url":
        from agent.config.urls import url

        return url(opt.name, r)
    return r.value


def seconds(name: str, r: Lookup, registry: RegistryKind = "nacos") -> float:
    """A duration option that always has a value (its default when unset), typed."""
    value = parse(OPTIONS_BY_NAME[name], r(name), registry)
    assert isinstance(value, float | int), name
    return float(value)


def generic_fields(
    cls: type, scopes: tuple[Scope, ...], r: Lookup, registry: RegistryKind = "nacos"
) -> dict[str, Any]:
    """The fields of a settings dataclass that are plain options of ``scopes``, parsed.

    A field named as such an option that is not ``special`` needs no code of its own: this is
    what makes a new option one declaration plus its field and its use.
    """
    plain = {o.name: o for o in OPTIONS_BY_NAME.values() if o.scope in scopes and not o.special}
    return {
        f.name: parse(plain[f.name], r(f.name), registry) for f in fields(cls) if f.name in plain
    }


def ordered_pair(low: str, a: float, high: str, b: float) -> None:
    """Two durations where the first must not exceed the second (e.g. min and max wait)."""
    if a > b:
        lf, hf = OPTIONS_BY_NAME[low].flag, OPTIONS_BY_NAME[high].flag
        raise ConfigError(f"{lf} {a:g} is greater than {hf} {b:g}; lower {lf} or raise {hf}")


def read_secret_file(r: Resolved, opt: str = "password_file") -> str:
    try:
        text = Path(r.value).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise fail(opt, r, f"cannot be read ({reason})", "mount the Secret file readable") from None
    # Secret volumes often carry a trailing newline that is not part of the password.
    secret = text.rstrip("\r\n")
    if not secret.strip():
        raise fail(opt, r, "is empty", "put the secret in the file (check the Secret's key)")
    return secret


def port_env(name: str, raw: str) -> int:
    if not DIGITS.fullmatch(raw):
        raise ConfigError(f"{name}={raw!r}: not a port number; give an integer 1-65535")
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r}: out of range; give an integer 1-65535")
    return value


def resolve_env_port(name: str, environ: Mapping[str, str]) -> int | None:
    raw = environ.get(name, "").strip()
    return port_env(name, raw) if raw else None
