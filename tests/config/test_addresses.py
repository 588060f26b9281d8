"""Every address field is parsed strictly: a typo is exit 2 with one line naming field and fix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import NacosSettings, load, load_sidecar
from agent.exceptions import ConfigError

BASE = {"PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5"}
NACOS = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"}


def error(flags: dict[str, object], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        load(flags, env)
    return str(err.value)


@pytest.mark.parametrize(
    ("addr", "meant"),
    [
        ("http//nacos:8848", "http://nacos:8848"),
        ("http:/nacos:8848", "http://nacos:8848"),
        ("https//nacos-0.infra:8848/nacos", "https://nacos-0.infra:8848/nacos"),
        ("http:nacos:8848", "http://nacos:8848"),
        ("http:///nacos:8848", "http://nacos:8848"),
    ],
)
@pytest.mark.parametrize(
    "env_name",
    ["PRESTOP_NACOS_ADDR", "NACOS_SERVER_ADDR", "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR"],
)
def test_scheme_typos_name_the_fix(addr: str, meant: str, env_name: str) -> None:
    message = error({}, {**BASE, env_name: addr})
    assert message.startswith(f"--nacos-addr {addr!r} from {env_name}: ")
    assert message.endswith(f"write {meant}")


def test_the_typo_from_the_issue_is_exit_2_on_one_line() -> None:
    """`--nacos-addr http//nacos:8848` once became http://http:8848//nacos:8848."""
    result = CliRunner().invoke(
        cli, ["drain", "--dry-run", "--nacos-addr", "http//nacos:8848"], env=BASE
    )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "prestop: error: --nacos-addr 'http//nacos:8848': 'http//nacos:8848' is not host:port; "
        "write http://nacos:8848"
    )
    assert "http://http" not in result.output


@pytest.mark.parametrize(
    "addr",
    [
        "nacos:8848?namespace=dev",  # the query was silently dropped
        "nacos:8848#x",
        "999.1.1.1:8848",  # a mistyped IP address passed as a host name
        "10.0.1:8848",
        "nacos:8848,http//nacos-1:8848",  # the second entry of a list
    ],
)
def test_more_bad_nacos_addresses(addr: str) -> None:
    assert error({}, {**BASE, "PRESTOP_NACOS_ADDR": addr}).startswith("--nacos-addr")


def test_trailing_slash_and_empty_entries_are_fine() -> None:
    cfg = load({}, {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848/, nacos-1:8848"})
    assert isinstance(cfg.target, NacosSettings)
    assert [str(s) for s in cfg.target.servers] == [
        "http://nacos:8848/nacos",
        "http://nacos-1:8848/nacos",
    ]


@pytest.mark.parametrize("path", ["na cos", "/nacos?x=1", "/nacos#f", "/a//b"])
def test_context_path(path: str) -> None:
    assert error({"context_path": path}, NACOS).startswith("--context-path")
    assert error({}, {**NACOS, "NACOS_CONTEXT_PATH": path}).startswith("--context-path")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http//eureka:8761/eureka/", "write http://eureka:8761/eureka/"),
        ("http:/eureka:8761/eureka/", "write http://eureka:8761/eureka/"),
        ("http://eureka:8761/eureka/?region=x", "?query"),
        ("http://eureka:8761/eureka/#x", "#fragment"),
        ("http://eureka:8761//eureka/", "empty // segment"),
        ("http://eureka:8761/eureka/,http//eureka-1:8761/eureka/", "eureka-1"),
        ("http://999.0.0.1:8761/eureka/", "not an http(s) URL"),
    ],
)
def test_eureka_urls(url: str, problem: str) -> None:
    for env_name in ("PRESTOP_EUREKA_URL", "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"):
        message = error({}, {**BASE, env_name: url})
        assert message.startswith(f"--eureka-url <hidden> from {env_name}: ")
        assert problem in message


def test_eureka_typo_with_a_password_shows_no_hint_and_no_secret() -> None:
    message = error({}, {**BASE, "PRESTOP_EUREKA_URL": "http//lab:s3cret-pw@eureka:8761/eureka/"})
    assert "s3cret" not in message
    assert "write " not in message


@pytest.mark.parametrize("opt", ["actuator_url", "metrics_url"])
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http//127.0.0.1:8081/actuator", "write http://127.0.0.1:8081/actuator"),
        ("http://127.0.0.1:8081/actuator#x", "#fragment"),
        ("http://127.0.0.1:8081//actuator", "empty // segment"),
        ("http://127.0.0.1:0/actuator", "invalid port"),
        ("http://1.2.3:8081/actuator", "not an http(s) URL"),
    ],
)
def test_app_urls(opt: str, url: str, problem: str) -> None:
    message = error({opt: url}, NACOS)
    assert message.startswith("--" + opt.replace("_", "-"))
    assert problem in message


def test_actuator_base_url_takes_no_query() -> None:
    """Paths are appended to it: ?x=1 would become ?x=1/prometheus."""
    assert "?query" in error({"actuator_url": "http://127.0.0.1:8081/actuator?x=1"}, NACOS)
    cfg = load({"metrics_url": "http://127.0.0.1:8081/actuator/prometheus?x=1"}, NACOS)
    assert cfg.metrics_url.endswith("?x=1")


@pytest.mark.parametrize("opt", ["actuator_url", "metrics_url"])
def test_credentials_in_app_urls_are_refused_unseen(opt: str) -> None:
    message = error({opt: "http://admin:hunter2-pw@127.0.0.1:8081/actuator"}, NACOS)
    assert "must not contain credentials" in message
    assert "hunter2" not in message


def test_management_base_path() -> None:
    env = {**NACOS, "MANAGEMENT_SERVER_PORT": "8081"}
    cfg = load({}, {**env, "MANAGEMENT_ENDPOINTS_WEB_BASE_PATH": "/manage/"})
    assert cfg.actuator_url == "http://127.0.0.1:8081/manage"
    message = error({}, {**env, "MANAGEMENT_ENDPOINTS_WEB_BASE_PATH": "/man age"})
    assert message.startswith("MANAGEMENT_ENDPOINTS_WEB_BASE_PATH=")


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"health_url": "http//127.0.0.1:8080/actuator/health"}, "--health-url"),
        ({"health_url": "http://127.0.0.1:8080/actuator/health#x"}, "--health-url"),
        ({"listen": "http://0.0.0.0:9901"}, "--listen"),
        ({"listen": "0.0.0.0:99999"}, "--listen"),
    ],
)
def test_sidecar_addresses(flags: dict[str, object], field: str) -> None:
    cfg = load({}, NACOS)
    with pytest.raises(ConfigError) as err:
        load_sidecar(flags, {"PRESTOP_TOKEN": "t0ken"}, cfg)
    assert str(err.value).startswith(field)
