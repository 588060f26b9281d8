"""Where the consumers' actuators are: --consumer-actuator, --consumer-port, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load
from agent.consumers import Subscriber
from agent.exceptions import ConfigError

BASE = {"PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5", "PRESTOP_NACOS_ADDR": "nacos:8848"}


def test_off_by_default() -> None:
    assert load({}, BASE).consumers is None


@pytest.mark.parametrize(
    ("env", "url"),
    [
        (
            {"PRESTOP_CONSUMER_ACTUATOR": "http://{ip}:8081/actuator/"},
            "http://10.1.2.3:8081/actuator",
        ),
        ({"PRESTOP_CONSUMER_ACTUATOR": "https://{ip}:{port}/mgmt"}, "https://10.1.2.3:9000/mgmt"),
        ({"PRESTOP_CONSUMER_PORT": "8081"}, "http://10.1.2.3:8081/actuator"),
        ({"PRESTOP_CONSUMER_PORT": "auto"}, "http://10.1.2.3:9000/actuator"),
    ],
)
def test_templates(env: dict[str, str], url: str) -> None:
    consumers = load({}, {**BASE, **env}).consumers
    assert consumers is not None
    assert consumers.base_url(Subscriber("c", "10.1.2.3", 9000)) == url
    assert consumers.auth is None and consumers.settle == 0.2


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://consumer:8081/actuator", "has no {ip}"),
        ("http://{ip}:{pod}/actuator", "unknown placeholder"),
        ("http//{ip}:8081/actuator", "not an http(s) URL template"),
        ("ftp://{ip}/actuator", "not an http(s) URL template"),
        ("http://{ip}:99999/actuator", "not an http(s) URL template"),
    ],
)
def test_bad_templates_name_the_field(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({"consumer_actuator": value}, BASE)
    assert str(err.value).startswith("--consumer-actuator") and problem in str(err.value)


def test_bad_consumer_port() -> None:
    with pytest.raises(ConfigError, match=r"^--consumer-port"):
        load({}, {**BASE, "PRESTOP_CONSUMER_PORT": "80a"})


def test_credentials_come_from_a_file_and_never_show(tmp_path: Path) -> None:
    good = tmp_path / "auth"
    good.write_text("ops:pa:ss word\n")
    consumers = load(
        {"consumer_actuator": "http://{ip}:8081/actuator", "consumer_auth_file": str(good)}, BASE
    ).consumers
    assert consumers is not None and consumers.auth == ("ops", "pa:ss word")
    assert "pa:ss" not in repr(consumers)
    bad = tmp_path / "bad"
    bad.write_text("only-a-password\n")
    with pytest.raises(ConfigError) as err:
        load({"consumer_port": "8081", "consumer_auth_file": str(bad)}, BASE)
    assert str(err.value).startswith("--consumer-auth-file") and "only-a-password" not in str(
        err.value
    )


def test_settle_is_a_duration() -> None:
    with pytest.raises(ConfigError, match=r"^--consumer-settle"):
        load({}, {**BASE, "PRESTOP_CONSUMER_PORT": "8081", "PRESTOP_CONSUMER_SETTLE": "soon"})
