"""Deciding a request from its head alone: route, method, token, framing and body size.

A pure function of the bytes read so far, so the server's loop only acts on its answer: wait
for more bytes, refuse (with the reason counted and the answer sent), or run the route.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.httpserver.messages import Limits, Request, Response, Route, error_response

_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Refused:
    reason: str  # counted in the refusal log, e.g. "forbidden"
    response: Response


@dataclass(frozen=True)
class Accepted:
    route: Route
    request: Request
    keep_alive: bool
    size: int  # bytes of the buffer this request used (head and body)


def _refused(reason: str, status: int, error: str) -> Refused:
    return Refused(reason, error_response(status, error))


def decide(
    buf: bytes | bytearray, limits: Limits, routes: Mapping[str, Route], client: str
) -> Accepted | Refused | None:
    """The first request in ``buf``; None while its head or (small) body is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > limits.max_header_bytes:
            return _refused("headers_too_large", 431, "request headers too large")
        return None
    if end + 4 > limits.max_header_bytes:
        return _refused("headers_too_large", 431, "request headers too large")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isalpha():
        return _refused("bad_request", 400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return _refused("bad_request", 400, "bad header line")
        headers[name.lower()] = value.strip()
        if name.lower() == "content-length":
            lengths.add(value.strip())
    # Framing, from the head alone.
    if "transfer-encoding" in headers:
        return _refused("bad_request", 501, "transfer-encoding not supported")
    length = 0
    if lengths:
        (raw,) = lengths if len(lengths) == 1 else ("",)
        if _CONTENT_LENGTH.fullmatch(raw):
            length = int(raw)
        elif raw.isdigit() and raw.isascii():  # all digits, just too many of them
            length = limits.max_body + 1
        else:
            return _refused("bad_request", 400, "malformed Content-Length")
    request = Request(method, target.split("?", 1)[0], headers, b"", client)
    route = routes.get(request.path)
    if route is None:
        return _refused("not_found", 404, "not found")
    if method not in route.methods:
        return _refused("method_not_allowed", 405, "method not allowed")
    if route.authorize is not None and not route.authorize(request):
        return _refused("forbidden", 403, "missing or wrong token")
    if length > limits.max_body:
        return _refused("body_too_large", 413, "request body too large")
    size = end + 4 + length
    if len(buf) < size:
        return None  # the (small) body is on its way; the request's deadline still runs
    body = bytes(buf[end + 4 : size])
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    return Accepted(route, Request(method, request.path, headers, body, client), keep, size)
