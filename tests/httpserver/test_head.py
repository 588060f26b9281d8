"""Deciding a request from its head: the pure part of the server, without sockets."""

from __future__ import annotations

import pytest

from agent.httpserver import Limits, Request, Response, Route
from agent.httpserver.head import Accepted, Refused, decide

LIMITS = Limits(max_header_bytes=256, max_body=16)


def _ok(_: Request) -> Response:
    return Response(200, b"{}")


ROUTES = {
    "/healthz": Route(_ok),
    "/prestop": Route(
        _ok,
        methods=frozenset({"GET", "POST"}),
        lane="own",
        authorize=lambda r: r.header("X-Token") == "t",
    ),
}


def _decide(raw: bytes) -> Accepted | Refused | None:
    return decide(raw, LIMITS, ROUTES, "10.0.0.1")


@pytest.mark.parametrize(
    ("raw", "reason", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 300, "headers_too_large", 431),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 300 + b"\r\n\r\n", "headers_too_large", 431),
        (b"GET /healthz\r\n\r\n", "bad_request", 400),
        (b"GET /healthz HTTP/2.0\r\n\r\n", "bad_request", 400),
        (b"GET /healthz HTTP/1.1\r\nno colon\r\n\r\n", "bad_request", 400),
        (b"GET /healthz HTTP/1.1\r\n X: 1\r\n\r\n", "bad_request", 400),
        (b"POST /prestop HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "bad_request", 501),
        (b"POST /prestop HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad_request", 400),
        (
            b"POST /prestop HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "bad_request",
            400,
        ),
        (b"GET /nope HTTP/1.1\r\n\r\n", "not_found", 404),
        (b"DELETE /healthz HTTP/1.1\r\n\r\n", "method_not_allowed", 405),
        (b"GET /prestop HTTP/1.1\r\nX-Token: wrong\r\n\r\n", "forbidden", 403),
        (
            b"POST /prestop HTTP/1.1\r\nX-Token: t\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "body_too_large",
            413,
        ),
    ],
)
def test_refused_from_the_head(raw: bytes, reason: str, status: int) -> None:
    decided = _decide(raw)
    assert isinstance(decided, Refused)
    assert (decided.reason, decided.response.status) == (reason, status)


def test_an_unauthorised_body_is_refused_before_it_arrives() -> None:
    """The token is checked from the head: a body that is still on its way is never awaited."""
    decided = _decide(b"POST /prestop HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(decided, Refused) and decided.reason == "forbidden"


def test_incomplete_heads_and_bodies_wait() -> None:
    assert _decide(b"GET /healthz HTTP/1.1\r\n") is None
    assert _decide(b"POST /prestop HTTP/1.1\r\nX-Token: t\r\nContent-Length: 4\r\n\r\nab") is None


def test_an_accepted_request_and_a_pipelined_one_behind_it() -> None:
    first = b"POST /prestop?x=1 HTTP/1.1\r\nX-Token: t\r\nContent-Length: 4\r\n\r\nabcd"
    decided = _decide(first + b"GET /healthz HTTP/1.0\r\n\r\n")
    assert isinstance(decided, Accepted)
    assert decided.size == len(first) and decided.keep_alive
    assert (decided.request.path, decided.request.body) == ("/prestop", b"abcd")
    assert decided.request.header("x-token") == "t" and decided.request.client == "10.0.0.1"
    second = _decide(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert isinstance(second, Accepted) and not second.keep_alive


def test_connection_close_ends_keep_alive() -> None:
    decided = _decide(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert isinstance(decided, Accepted) and not decided.keep_alive
