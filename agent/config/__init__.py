"""Configuration: flags > ``PRESTOP_*`` env > the app's own env > defaults, checked before any I/O.

Every option is declared once, in :mod:`agent.config.options` (``OPTIONS``): its name, kind
(seconds, port, choice, switch, URL ...), default, help, ``--help`` section, the app's env
variables it falls back to, and whether it is secret. Per-registry defaults live in one profile
per registry (``PROFILES`` in :mod:`agent.config.spec`, looked up by :mod:`.defaults`). From
that one declaration come the click flag and its ``--help`` line (:mod:`agent.config.flags`),
the ``PRESTOP_<NAME>`` variable, the unknown-``PRESTOP_*`` warning, the error messages and the
loading (:mod:`.load`). Modules: ``spec`` (what a declaration holds), ``options`` (the table),
``defaults``, ``values`` (sources and parsers), ``urls`` (addresses), ``registry`` (Nacos and
Eureka settings), ``sidecar`` (``serve``'s own settings), ``load`` (:class:`Config`), ``flags``.

:func:`load` resolves each value from the first source that has it, remembers where it came
from (so an error can say ``PRESTOP_PORT='abc'``), parses it and returns a frozen
:class:`Config`. A bad value raises :class:`ConfigError` with one line naming the field, where
it came from and the fix (exit 2, nothing touched). Click passes every value through as text,
so this stays true for flags too. No network I/O here; the only files read are the password,
token and consumer credential files.

How to add an option:

1. Declare it in ``OPTIONS`` (``kind``, ``default`` or a ``PROFILES`` entry, ``help``, ``group``;
   ``app_env`` when the app already has a variable for it, ``secret=True`` when it is one).
   Its ``scope`` decides which commands take it.
2. Add a field of the same name to :class:`Config` (or ``SidecarSettings`` for a sidecar
   option), typed, without a default: :func:`generic_fields` fills it by its kind.
3. Use it (``cfg.<name>``). That is all: flag, env name, ``--help``, validation and the
   unknown-variable warning follow from the declaration. Only an option whose value is derived
   or checked against another needs ``special=True`` and a few lines in the loader.
"""

from agent.config.defaults import default_of, seconds_default
from agent.config.load import (
    LOG_LEVELS,
    SIGNALS,
    Config,
    LogFormat,
    ShutdownMode,
    check_drain_budget,
    load,
)
from agent.config.options import OPTIONS, OPTIONS_BY_NAME
from agent.config.registry import (
    DEFAULT_CONTEXT_PATH,
    EurekaSettings,
    NacosSettings,
    load_eureka,
    load_nacos,
    load_target,
)
from agent.config.sidecar import SidecarSettings, load_sidecar, load_state_dir, startup_hold_of
from agent.config.spec import PROFILES, REGISTRIES, Option, RegistryKind
from agent.config.urls import (
    DEFAULT_NACOS_PORT,
    EurekaServer,
    ServerAddress,
    parse_eureka_urls,
    parse_servers,
    valid_host,
)
from agent.config.values import Resolved, resolve, resolve_env_port

__all__ = [
    "DEFAULT_CONTEXT_PATH",
    "DEFAULT_NACOS_PORT",
    "LOG_LEVELS",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "PROFILES",
    "REGISTRIES",
    "SIGNALS",
    "Config",
    "EurekaServer",
    "EurekaSettings",
    "LogFormat",
    "NacosSettings",
    "Option",
    "RegistryKind",
    "Resolved",
    "ServerAddress",
    "ShutdownMode",
    "SidecarSettings",
    "check_drain_budget",
    "default_of",
    "load",
    "load_eureka",
    "load_nacos",
    "load_sidecar",
    "load_state_dir",
    "load_target",
    "parse_eureka_urls",
    "parse_servers",
    "resolve",
    "resolve_env_port",
    "seconds_default",
    "startup_hold_of",
    "valid_host",
]
