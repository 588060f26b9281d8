"""Defaults, looked up in the one declaration of each option and its registry's profile."""

from __future__ import annotations

from agent.config.options import OPTIONS_BY_NAME
from agent.config.spec import PROFILES, REGISTRIES, Option, RegistryKind, Value, shown


def default_of(name: str, registry: RegistryKind = "nacos") -> Value:
    """The default of one option, for one registry (Nacos: the defaults of the pure code)."""
    profile = PROFILES[registry]
    return profile[name] if name in profile else OPTIONS_BY_NAME[name].default


def seconds_default(name: str, registry: RegistryKind = "nacos") -> float:
    """A numeric default, typed, for the dataclasses that repeat it as their field default."""
    value = default_of(name, registry)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} has no numeric default")
    return float(value)


def default_help(opt: Option) -> str | None:
    """The default as --help states it: per registry when a profile sets one."""
    if any(opt.name in p for p in PROFILES.values()):
        return ", ".join(
            f"{kind.capitalize()} {shown(default_of(opt.name, kind))}" for kind in REGISTRIES
        )
    if opt.default_text is not None:
        return opt.default_text
    return None if opt.default is None else shown(opt.default)


def text_default(name: str) -> str:
    """A text default, typed."""
    return str(OPTIONS_BY_NAME[name].default)
