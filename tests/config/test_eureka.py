"""Eureka configuration: registry choice, service URLs with credentials, app name, instance id."""

from __future__ import annotations

import json

import pytest

from agent.config import EurekaSettings, load
from agent.exceptions import ConfigError

APP_ENV = {
    "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://eureka-0:8761/eureka/,http://eureka-1:8761/eureka/v2",
    "SPRING_APPLICATION_NAME": "orders",
    "POD_IP": "10.0.0.5",
    "SERVER_PORT": "9000",
}


def test_eureka_is_chosen_when_only_eureka_is_configured() -> None:
    """The app's own Eureka variables are enough; the app name is upper-cased."""
    cfg = load({}, APP_ENV)
    assert cfg.registry == "eureka"
    assert cfg.registry == "eureka"
    assert isinstance(cfg.target, EurekaSettings)
    assert [str(s) for s in cfg.target.servers] == [
        "http://eureka-0:8761/eureka/",
        "http://eureka-1:8761/eureka/v2/",
    ]
    assert cfg.service == "ORDERS"
    assert cfg.target.app_name == "orders"
    assert (cfg.ip, cfg.port) == ("10.0.0.5", 9000)
    assert cfg.max_wait == 105.0  # Eureka's worst-case staleness + a quiet window caps the drain
    assert cfg.confirm_timeout == 35.0  # one 30 s server cache tick and some slack


def test_userinfo_moves_to_credentials_and_is_never_shown() -> None:
    """user:password@ leaves the URL; neither the log line nor str() shows the password."""
    env = {
        **APP_ENV,
        "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://admin:p%40ss@eureka:8761/eureka/",
    }
    cfg = load({}, env)
    assert isinstance(cfg.target, EurekaSettings)
    server = cfg.target.servers[0]
    assert (server.username, server.password) == ("admin", "p@ss")
    assert str(server) == "http://eureka:8761/eureka/"
    shown = json.dumps(cfg.redacted()) + repr(cfg)
    assert "p@ss" not in shown
    assert "p%40ss" not in shown


def test_bad_url_error_never_echoes_the_password() -> None:
    """A malformed entry is reported by field, without its (possibly secret) value."""
    env = {
        **APP_ENV,
        "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "ftp://admin:hunter2@eureka:8761/eureka/",
    }
    with pytest.raises(ConfigError) as exc:
        load({}, env)
    assert "--eureka-url" in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_url_without_path_is_refused() -> None:
    """http://eureka:8761 has no /eureka/ path: the fix is named."""
    with pytest.raises(ConfigError, match="whole service URL"):
        load({}, {**APP_ENV, "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://eureka:8761"})


def test_both_registries_configured_needs_a_choice() -> None:
    """Nacos and Eureka both set: ask for --registry; with it, the choice is taken."""
    env = {**APP_ENV, "NACOS_SERVER_ADDR": "nacos:8848"}
    with pytest.raises(ConfigError, match="--registry"):
        load({}, env)
    assert load({"registry": "eureka"}, env).registry == "eureka"
    assert load({"registry": "nacos"}, env).registry == "nacos"


def test_appname_and_instance_id_from_the_apps_eureka_settings() -> None:
    """eureka.instance.appname beats spring.application.name; the instance id is taken verbatim."""
    env = {
        **APP_ENV,
        "EUREKA_INSTANCE_APPNAME": "order-service",
        "EUREKA_INSTANCE_INSTANCE_ID": "orders-7d9c:orders:9000",
    }
    cfg = load({}, env)
    assert cfg.service == "ORDER-SERVICE"
    assert (
        isinstance(cfg.target, EurekaSettings)
        and cfg.target.instance_id == "orders-7d9c:orders:9000"
    )
    assert cfg.instance == "orders-7d9c:orders:9000"


def test_flag_beats_app_env_for_the_url() -> None:
    """--eureka-url wins over EUREKA_CLIENT_SERVICEURL_DEFAULTZONE."""
    cfg = load({"eureka_url": "http://other:8761/eureka/"}, APP_ENV)
    assert isinstance(cfg.target, EurekaSettings)
    assert [str(s) for s in cfg.target.servers] == ["http://other:8761/eureka/"]


def test_no_registry_at_all_names_both_options() -> None:
    """Neither configured: the error says how to set either."""
    with pytest.raises(ConfigError) as exc:
        load({}, {"SPRING_APPLICATION_NAME": "orders", "POD_IP": "10.0.0.5"})
    assert "--nacos-addr" in str(exc.value)
    assert "--eureka-url" in str(exc.value)
