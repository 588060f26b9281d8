"""What the server and its routes exchange: limits, requests, responses and routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

Lane = Literal["inline", "pool", "own"]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    max_header_bytes: int = 8192
    max_body: int = 4096
    header_timeout: float = 5.0  # a request's head and body, from its first byte (or accept)
    idle_timeout: float = 5.0  # a kept-alive connection between requests
    write_timeout: float = 10.0
    pool_workers: int = 4  # lane "pool": slow, unauthenticated routes (e.g. /readyz)
    pool_queue: int = 16
    own_workers: int = 8  # lane "own": authorised long calls (e.g. /prestop)
    log_interval: float = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes
    client: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    methods: frozenset[str] = frozenset({"GET"})
    lane: Lane = "inline"
    # Checked from the head, before any body is read; False: 403.
    authorize: Callable[[Request], bool] | None = None


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def error_response(status: int, error: str) -> Response:
    return Response(status, ('{"error": "' + error + '"}').encode())
