"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import NacosSettings, load
from agent.exceptions import ConfigError

BASE = {"PRESTOP_NACOS_ADDR": "nacos:8848", "PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5"}


def test_defaults_from_env_alone() -> None:
    """Env alone is enough; unset options take their documented defaults."""
    cfg = load({}, BASE)
    assert isinstance(cfg.target, NacosSettings)
    assert [str(s) for s in cfg.target.servers] == ["http://nacos:8848/nacos"]
    assert cfg.target.namespace == "public"
    assert cfg.target.group == "DEFAULT_GROUP"
    assert cfg.target.cluster == "DEFAULT"
    assert cfg.target.port == 8080
    assert cfg.budget == 25.0
    assert cfg.actuator_url == "http://127.0.0.1:8080/actuator"
    assert cfg.metrics_url == "http://127.0.0.1:8080/actuator/prometheus"
    assert cfg.shutdown == "actuator"


def test_flags_beat_prestop_env_beat_app_env() -> None:
    """A flag wins over PRESTOP_*, which wins over the app's own variables."""
    env = {
        **BASE,
        "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR": "app-nacos:8848",
        "SPRING_APPLICATION_NAME": "from-app",
        "SERVER_PORT": "9000",
        "PRESTOP_PORT": "9100",
    }
    cfg = load({"port": "9200"}, env)
    assert isinstance(cfg.target, NacosSettings)
    assert cfg.target.port == 9200
    assert cfg.sources["port"] == "--port"
    cfg = load({}, env)
    assert isinstance(cfg.target, NacosSettings)
    assert cfg.target.port == 9100
    assert str(cfg.target.servers[0]) == "http://nacos:8848/nacos"
    assert cfg.target.service == "orders"


def test_app_env_fallbacks() -> None:
    """Without PRESTOP_* the agent reads what a Spring Cloud Alibaba pod already has."""
    env = {
        "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR": "a:8848,https://b:8443/ctx",
        "SPRING_APPLICATION_NAME": "orders",
        "SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE": "prod",
        "SPRING_CLOUD_NACOS_DISCOVERY_GROUP": "G1",
        "SPRING_CLOUD_NACOS_DISCOVERY_CLUSTER_NAME": "SH",
        "podip": "10.1.1.1",
        "SERVER_PORT": "8081",
        "MANAGEMENT_SERVER_PORT": "9090",
        "NACOS_USERNAME": "nacos",
        "NACOS_PASSWORD": "s3cret",
    }
    cfg = load({}, env)
    assert isinstance(cfg.target, NacosSettings)
    assert [str(s) for s in cfg.target.servers] == [
        "http://a:8848/nacos",
        "https://b:8443/ctx",
    ]
    assert (cfg.target.namespace, cfg.target.group, cfg.target.cluster) == ("prod", "G1", "SH")
    assert (cfg.target.ip, cfg.target.port) == ("10.1.1.1", 8081)
    assert cfg.actuator_url == "http://127.0.0.1:9090/actuator"
    assert cfg.target.password == "s3cret"


def test_pod_ip_beats_podip() -> None:
    """POD_IP is read before podip."""
    cfg = load({}, {**BASE, "POD_IP": "10.0.0.7", "podip": "10.0.0.8"})
    assert isinstance(cfg.target, NacosSettings)
    assert cfg.target.ip == "10.0.0.7"


def test_password_file_trailing_newline(tmp_path: Path) -> None:
    """A Secret file's trailing newline is not part of the password."""
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    cfg = load({"username": "nacos", "password_file": str(f)}, BASE)
    assert isinstance(cfg.target, NacosSettings)
    assert cfg.target.password == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert cfg.redacted()["password"] == "<provided-not-displayed>"


@pytest.mark.parametrize(
    ("flags", "env", "needle"),
    [
        ({"port": "abc"}, {}, "--port 'abc': not a port number"),
        ({}, {"PRESTOP_PORT": "70000"}, "--port '70000' from PRESTOP_PORT: out of range"),
        ({"budget": "-1"}, {}, "--budget '-1'"),
        ({"budget": "0"}, {}, "--budget '0'"),
        ({"ip": "not-an-ip"}, {}, "--ip 'not-an-ip': is not an IP address"),
        ({"shutdown": "kill"}, {}, "--shutdown 'kill': unknown mode"),
        ({"min_wait": "10", "max_wait": "5"}, {}, "--min-wait 10 is greater than --max-wait 5"),
        ({"nacos_addr": "http://u:p@nacos:8848"}, {}, "must not contain credentials"),
        ({"nacos_addr": "nacos:99999"}, {}, "invalid port"),
        ({"actuator_url": "ftp://x"}, {}, "--actuator-url 'ftp://x': not an http(s) URL"),
        ({"username": "nacos"}, {}, "--password: not set but a username is"),
    ],
)
def test_bad_values_name_the_field(flags: dict[str, str], env: dict[str, str], needle: str) -> None:
    """Each bad value is one line naming the option and the fix."""
    with pytest.raises(ConfigError) as err:
        load(flags, {**BASE, **env})
    message = str(err.value)
    assert needle in message
    assert "\n" not in message
    assert ";" in message  # problem; fix


def test_missing_service_and_addr() -> None:
    """Missing required settings name every place they may come from."""
    with pytest.raises(ConfigError, match="--service: not set"):
        load({}, {"PRESTOP_NACOS_ADDR": "n:8848", "POD_IP": "10.0.0.1"})
    with pytest.raises(ConfigError, match="--nacos-addr: not set"):
        load({}, {"PRESTOP_SERVICE": "s", "POD_IP": "10.0.0.1"})


def test_unreadable_password_file(tmp_path: Path) -> None:
    """An unreadable password file is a config error that does not echo any secret."""
    with pytest.raises(ConfigError, match=r"--password-file .* cannot be read"):
        load({"username": "u", "password_file": str(tmp_path / "missing")}, BASE)


def test_secret_never_in_error() -> None:
    """Errors about the address never echo credentials."""
    with pytest.raises(ConfigError) as err:
        load({"nacos_addr": "http://admin:hunter2@nacos:8848"}, BASE)
    assert "hunter2" not in str(err.value)


def test_empty_env_counts_as_unset() -> None:
    """An empty PRESTOP_SERVICE falls through to SPRING_APPLICATION_NAME."""
    cfg = load({}, {**BASE, "PRESTOP_SERVICE": "", "SPRING_APPLICATION_NAME": "app"})
    assert isinstance(cfg.target, NacosSettings)
    assert cfg.target.service == "app"


def test_metric_names_and_signals() -> None:
    """Metric names and signal lists are validated."""
    cfg = load({"requests_metric": "a_total", "signals": "prometheus,kernel"}, BASE)
    assert cfg.requests_metric == "a_total"
    assert cfg.signals == ("prometheus", "kernel")
    with pytest.raises(ConfigError, match="--requests-metric"):
        load({"requests_metric": "no spaces"}, BASE)
    with pytest.raises(ConfigError, match="--signals"):
        load({"signals": "tcpdump"}, BASE)
