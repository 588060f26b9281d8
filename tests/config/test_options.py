"""Every option is declared once: its flag, --help line, env names and defaults derive from it."""

from __future__ import annotations

import re
from dataclasses import fields

import click
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import (
    OPTIONS,
    OPTIONS_BY_NAME,
    PROFILES,
    REGISTRIES,
    Config,
    EurekaSettings,
    NacosSettings,
    SidecarSettings,
    default_of,
    load,
)
from agent.config.flags import GroupedCommand, help_text, metavar
from agent.config.spec import GROUPS
from agent.drain.policy import DrainConfig
from agent.exceptions import ConfigError
from agent.sequence import Plan

NACOS = {"PRESTOP_NACOS_ADDR": "nacos:8848", "PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5"}
EUREKA = {
    "PRESTOP_EUREKA_URL": "http://eureka:8761/eureka/",
    "PRESTOP_SERVICE": "orders",
    "POD_IP": "10.0.0.5",
}
# Options read by hand rather than through a settings field of the same name.
READ_BY_HAND = {
    "nacos_addr",
    "context_path",
    "registry",
    "eureka_url",
    "username",
    "password",
    "password_file",
    "consumer_actuator",
    "consumer_port",
    "consumer_auth_file",
    "consumer_settle",
    "listen",
    "token_file",
}


def _commands() -> dict[str, click.Command]:
    return {name: cmd for name, cmd in cli.commands.items() if isinstance(cmd, GroupedCommand)}


def _entries(text: str) -> dict[str, str]:
    """Each option's --help entry (the help may start on the next line), by its flag."""
    entries: dict[str, str] = {}
    flag = ""
    for line in text.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            entries[flag] = line
        elif line.startswith("   ") and flag:
            entries[flag] += " " + line.strip()
        else:
            flag = ""
    return entries


def _help(command: str) -> str:
    """--help as one line per option: wide enough that no help text is wrapped."""
    result = CliRunner().invoke(
        cli, [command, "--help"], terminal_width=2000, max_content_width=2000
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_every_option_is_in_some_help_with_its_type_and_env() -> None:
    """(a) Each option shows its flag, its type (FLOAT, INTEGER, [a|b]) and every env name."""
    shown: set[str] = set()
    for name, command in _commands().items():
        entries = _entries(_help(name))
        for param in command.params:
            opt = OPTIONS_BY_NAME.get(param.name or "")
            if opt is None:
                continue
            shown.add(opt.name)
            line = entries[opt.flag]
            if opt.kind == "switch":
                assert f"{opt.flag} / --no-{opt.flag[2:]}" in line
            else:
                assert f"{opt.flag} {metavar(opt)}" in line
            for env in (opt.env, *opt.app_env):
                assert env in line, (name, opt.name, env)
    assert shown == set(OPTIONS_BY_NAME)


def test_numbers_and_choices_are_typed_in_help() -> None:
    text = _help("drain")
    assert re.search(r"--max-wait FLOAT\s", text)
    assert re.search(r"--port INTEGER\s", text)
    assert re.search(r"--shutdown \[actuator\|signal\|none\]\s", text)
    assert re.search(r"--registry \[nacos\|eureka\]\s", text)
    assert not re.search(r"--(budget|min-wait|poll-interval|http-timeout) TEXT", text)


def test_help_is_in_sections_by_concern() -> None:
    text = _help("serve")
    titles = [line[:-1] for line in text.splitlines() if line and line.endswith(":")]
    expected = [t for t in GROUPS.values() if t != "Check"]
    assert [t for t in titles if t in GROUPS.values()] == expected
    assert "Check:" in _help("check")


@pytest.mark.parametrize("name", sorted({n for p in PROFILES.values() for n in p}))
def test_per_registry_defaults_are_shown(name: str) -> None:
    """(b) A default that differs per registry is shown for each, from the profiles."""
    opt = OPTIONS_BY_NAME[name]
    line = _entries(_help("drain"))[opt.flag]
    nacos, eureka = (default_of(name, kind) for kind in REGISTRIES)
    assert f"default: Nacos {nacos:g}, Eureka {eureka:g}" in line
    assert opt.default is None  # one place only: the profiles


def test_per_registry_defaults_are_applied() -> None:
    """(b) Eureka's profile is applied to a Eureka config, Nacos's to a Nacos one."""
    for env, kind in ((NACOS, "nacos"), (EUREKA, "eureka")):
        cfg = load({}, env)
        assert cfg.registry == kind
        for name, value in PROFILES[kind].items():
            assert getattr(cfg, name) == value, (kind, name)
    assert (load({}, EUREKA).max_wait, load({}, EUREKA).confirm_timeout) == (105.0, 35.0)
    assert load({"max_wait": "70"}, EUREKA).max_wait == 70.0
    assert load({}, {**EUREKA, "PRESTOP_CONFIRM_TIMEOUT": "5"}).confirm_timeout == 5.0


def test_click_options_are_generated_from_the_declarations() -> None:
    """(c) Each command's options are the declared ones, whole scopes, as generated."""
    for name, command in _commands().items():
        declared = [p for p in command.params if p.name in OPTIONS_BY_NAME]
        others = {p.name for p in command.params if p.name not in OPTIONS_BY_NAME}
        assert others <= {"as_json"}, (name, others)
        scopes = {OPTIONS_BY_NAME[str(p.name)].scope for p in declared}
        assert [p.name for p in declared] == [o.name for o in OPTIONS if o.scope in scopes]
        for param in declared:
            opt = OPTIONS_BY_NAME[str(param.name)]
            assert isinstance(param, click.Option)
            assert param.help == help_text(opt)
            assert param.default is None  # the default is applied by the config, per registry
            assert opt.flag in param.opts


def test_every_option_is_read() -> None:
    """(c) A declared option is a settings field (filled from it) or read by the loader."""
    settings = {
        f.name
        for cls in (Config, SidecarSettings, NacosSettings, EurekaSettings)
        for f in fields(cls)
    }
    unread = set(OPTIONS_BY_NAME) - settings - READ_BY_HAND - {"service", "state_dir"}
    assert unread == set()
    for opt in OPTIONS:
        assert opt.group in GROUPS
        assert opt.help.endswith("."), opt.name


def test_pure_code_defaults_come_from_the_declarations() -> None:
    """(c) DrainConfig and Plan repeat no literal: their defaults are the Nacos profile's."""
    drain = DrainConfig()
    for name in ("min_wait", "max_wait", "poll_interval", "confidence", "quiet_floor", "quiet_cap"):
        assert getattr(drain, name) == default_of(name), name
    assert drain.settle == default_of("consumer_settle")
    plan = Plan(budget=25, drain=drain)
    assert plan.confirm_timeout == default_of("confirm_timeout")
    assert plan.shutdown_timeout == default_of("shutdown_timeout")


def test_every_declared_env_is_known_and_a_typo_is_not() -> None:
    """(d) The unknown-PRESTOP_* warning knows every declared option and nothing else."""
    # Empty values count as unset: every name is present, none changes the config.
    declared = {o.env: "" for o in OPTIONS if o.env not in NACOS}
    env = {**NACOS, **declared, "PRESTOP_TOKEN": "", "PRESTOP_BUGDET": "50"}
    assert load({}, env).unknown_env == ("PRESTOP_BUGDET",)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"budget": "soon"}, {}, "--budget 'soon': not a number"),
        ({}, {"PRESTOP_BUDGET": "soon"}, "--budget 'soon' from PRESTOP_BUDGET: not a number"),
        ({}, {"PRESTOP_PORT": "abc"}, "--port 'abc' from PRESTOP_PORT: not a port number"),
        ({"registry": "zk"}, {}, "--registry 'zk': unknown registry; use nacos or eureka"),
        ({}, {"PRESTOP_LOG_FORMAT": "xml"}, "from PRESTOP_LOG_FORMAT: unknown format"),
        ({"max_wait": "1"}, {}, "--min-wait 2 is greater than --max-wait 1"),
    ],
)
def test_typed_flags_keep_the_one_line_error(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    """Click passes values through as text, so the config names the field, source and fix."""
    with pytest.raises(ConfigError) as err:
        load(flags, {**NACOS, **env})
    assert message in str(err.value)


def test_a_bad_typed_flag_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """`--max-wait soon` (a FLOAT in --help) is our one line, not click's usage block."""
    from agent.cli import main

    with pytest.raises(SystemExit) as done:
        main(
            [
                "drain",
                "--nacos-addr",
                "nacos:8848",
                "--service",
                "o",
                "--ip",
                "10.0.0.5",
                "--max-wait",
                "soon",
            ]
        )
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "prestop: error: --max-wait 'soon': not a number; give seconds as a number, e.g. 60"
    ]
