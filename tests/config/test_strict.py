"""Strict parsing of addresses, ports and secret files (each case was accepted before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import EurekaSettings, NacosSettings, load, load_sidecar
from agent.exceptions import ConfigError

BASE = {"PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5"}


@pytest.mark.parametrize(
    "addr",
    [
        "nacos:0",  # silently became 8848
        "http//nacos:8848",  # a typo that became http://http:8848//nacos:8848
        "nacos .infra:8848",  # a space in the host
        "nacös:8848",  # not ASCII: IDNA fails later, in the middle of a drain
        "nacos:８８４８",  # full-width digits: int() takes them, no server does
        "nacos:+8848",
        "nacos:88480",
    ],
)
def test_bad_nacos_addresses_are_refused(addr: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({}, {**BASE, "PRESTOP_NACOS_ADDR": addr})
    assert str(err.value).startswith("--nacos-addr")


@pytest.mark.parametrize(
    ("addr", "server"),
    [
        ("nacos.infra:8848", "http://nacos.infra:8848/nacos"),
        ("nacos", "http://nacos:8848/nacos"),
        (
            "https://nacos-0.nacos-headless.infra.svc.cluster.local",
            "https://nacos-0.nacos-headless.infra.svc.cluster.local:8848/nacos",
        ),
        ("[fd00::1]:8848", "http://[fd00::1]:8848/nacos"),
        ("10.0.0.9:8849/custom", "http://10.0.0.9:8849/custom"),
    ],
)
def test_good_nacos_addresses_still_parse(addr: str, server: str) -> None:
    cfg = load({}, {**BASE, "PRESTOP_NACOS_ADDR": addr})
    assert isinstance(cfg.target, NacosSettings)
    assert [str(s) for s in cfg.target.servers] == [server]


@pytest.mark.parametrize("port", ["８０８０", "+8080", " 8080", "8080.0", "0"])
def test_port_takes_ascii_digits_only(port: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({"port": port}, {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"})
    assert str(err.value).startswith("--port")


@pytest.mark.parametrize("content", ["", "\n", "   \n", "\t"])
def test_empty_password_file_is_refused(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "password"
    secret.write_text(content)
    env = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848", "PRESTOP_USERNAME": "nacos"}
    with pytest.raises(ConfigError) as err:
        load({"password_file": str(secret)}, env)
    assert str(err.value).startswith("--password-file")
    assert "empty" in str(err.value)


def test_token_file_errors_name_the_token_file(tmp_path: Path) -> None:
    env = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"}
    cfg = load({}, env)
    for flags in ({"token_file": str(tmp_path / "missing")}, {"token_file": str(tmp_path)}):
        with pytest.raises(ConfigError) as err:
            load_sidecar(flags, env, cfg)
        assert str(err.value).startswith("--token-file")
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ConfigError) as err:
        load_sidecar({"token_file": str(empty)}, env, cfg)
    assert str(err.value).startswith("--token-file")


@pytest.mark.parametrize("password", ["p@ss", "p#ss", "p/ss?x", "a@b#c/d"])
def test_eureka_password_with_unencoded_characters(password: str) -> None:
    """``@``, ``#``, ``/`` and ``?`` in a pasted password neither break the URL nor leak."""
    env = {**BASE, "PRESTOP_EUREKA_URL": f"http://lab:{password}@eureka-0:8761/eureka/"}
    cfg = load({}, env)
    assert isinstance(cfg.target, EurekaSettings)
    (server,) = cfg.target.servers
    assert str(server) == "http://eureka-0:8761/eureka/"
    assert (server.username, server.password) == ("lab", password)
    assert password not in repr(cfg.redacted())


def test_bad_eureka_url_with_an_odd_password_never_echoes_it() -> None:
    env = {**BASE, "PRESTOP_EUREKA_URL": "http://lab:s#cret@eure ka:8761/eureka/"}
    with pytest.raises(ConfigError) as err:
        load({}, env)
    assert "s#cret" not in str(err.value)
    assert "cret" not in str(err.value)


def test_unknown_prestop_variables_are_named() -> None:
    """A misspelled PRESTOP_* variable is no longer silently ignored (names only, no values)."""
    env = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848", "PRESTOP_BUGDET": "50", "PRESTOP_TOKEN": "t"}
    assert load({}, env).unknown_env == ("PRESTOP_BUGDET",)


def test_log_level() -> None:
    env = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"}
    assert load({}, env).log_level == "info"
    assert load({}, {**env, "PRESTOP_LOG_LEVEL": "WARNING"}).log_level == "warning"
    with pytest.raises(ConfigError) as err:
        load({}, {**env, "PRESTOP_LOG_LEVEL": "loud"})
    assert str(err.value).startswith("--log-level")


@pytest.mark.parametrize(
    ("flags", "need"),
    [({"budget": "4"}, "10.75"), ({"shutdown_timeout": "30"}, "35.75")],
)
def test_a_budget_that_cannot_fit_the_sequence_is_refused(
    flags: dict[str, object], need: str
) -> None:
    from agent.config import check_drain_budget

    cfg = load(flags, {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"})
    with pytest.raises(ConfigError) as err:
        check_drain_budget(cfg)
    assert str(err.value).startswith("--budget")
    assert f"at least {need}" in str(err.value)
    check_drain_budget(load({}, {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"}))  # defaults fit
