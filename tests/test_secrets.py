"""Secrets never reach a log line or the summary, even when a server echoes them back."""

from __future__ import annotations

import io
import json

from agent import logs
from agent.config import load, load_sidecar
from agent.exceptions import AuthError
from agent.sequence import describe_error

BASE = {"PRESTOP_SERVICE": "orders", "POD_IP": "10.0.0.5", "PRESTOP_NACOS_ADDR": "nacos:8848"}
SECRET = "s3cret-Pa$$/word"


def test_an_echoed_login_form_is_masked_in_logs_and_errors() -> None:
    """A 400 that echoes the form (`password=...`, JSON or URL-encoded) shows no password."""
    load({}, {**BASE, "PRESTOP_USERNAME": "nacos", "PRESTOP_PASSWORD": SECRET})
    from urllib.parse import quote_plus

    echoes = [
        f"username=nacos&password={quote_plus(SECRET)}",
        json.dumps({"username": "nacos", "password": SECRET}),
        f"bad request: {SECRET}",
    ]
    out = io.StringIO()
    logs.configure(log_format="json", stream=out)
    for echo in echoes:
        error = AuthError(f"login refused for user 'nacos': {echo}")
        assert SECRET not in describe_error(error)
        assert quote_plus(SECRET) not in describe_error(error)
        logs.get_logger().error("take_out_failed", error=str(error))
    assert SECRET not in out.getvalue()
    assert quote_plus(SECRET) not in out.getvalue()
    assert "***" in out.getvalue()
    summary = logs.json_safe({"phases": {"take_out": {"error": echoes[1]}}})
    assert SECRET not in json.dumps(summary)


def test_eureka_passwords_and_the_sidecar_token_are_masked() -> None:
    env = {
        "PRESTOP_SERVICE": "orders",
        "POD_IP": "10.0.0.5",
        "PRESTOP_EUREKA_URL": "http://lab:eu#reka-pw@eureka:8761/eureka/",
        "PRESTOP_TOKEN": "sidecar-token-123",
    }
    cfg = load({}, env)
    load_sidecar({}, env, cfg)
    assert logs.redact("x eu#reka-pw y sidecar-token-123 z") == "x *** y *** z"


def test_a_password_equal_to_the_user_name_is_not_masked() -> None:
    """nacos/nacos: masking "nacos" would blank every host name; it is no secret anyway."""
    load({}, {**BASE, "PRESTOP_USERNAME": "nacos", "PRESTOP_PASSWORD": "nacos"})
    assert logs.redact("http://nacos:8848") == "http://nacos:8848"
