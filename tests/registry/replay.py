"""Recorded server answers (``answers/*.json``) served again by httpx.MockTransport.

In httpx's own test style: the adapters under test run unchanged against an ``httpx.Client``
whose transport is a handler, here one that answers each request with what the real server
answered the same request when it was recorded (``answers/README.md`` says which server and
which request). Requests are matched by method and path; a route recorded several times
answers in the recorded order and then repeats its last answer. A request nothing was
recorded for fails the test, naming it.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

ANSWERS = Path(__file__).parent / "answers"


@dataclass(frozen=True)
class Answer:
    """One recorded exchange: the request as sent and the server's answer."""

    request: str  # "GET /v1/ns/instance?serviceName=…", relative to the server's base URL
    status: int
    content_type: str
    body: bytes
    error: str | None = None  # the transport error the real client saw instead of an answer

    @property
    def method(self) -> str:
        return self.request.split(" ", 1)[0]

    @property
    def path(self) -> str:
        # Decoded, as httpx.URL.path is: ids such as ip:app:port are sent percent-encoded.
        return unquote(urlsplit(self.request.split(" ", 1)[1]).path)

    @property
    def params(self) -> dict[str, str]:
        query = urlsplit(self.request.split(" ", 1)[1]).query
        return {k: v[-1] for k, v in parse_qs(query).items()}

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, body: Any) -> Answer:
        """The same exchange with another JSON body (a shape no lab server answers)."""
        return replace(self, body=json.dumps(body).encode())

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.error is not None:
            raise getattr(httpx, self.error)("recorded", request=request)
        return httpx.Response(
            self.status, headers={"Content-Type": self.content_type}, content=self.body
        )


@dataclass(frozen=True)
class Recording:
    server: str  # e.g. "Nacos 2.3.1"
    steps: dict[str, list[Answer]]

    def step(self, *names: str) -> list[Answer]:
        return [a for name in names for a in self.steps[name]]

    def first(self, step: str, method: str, path_end: str) -> Answer:
        """The first answer of ``step`` to ``method`` on a path ending with ``path_end``."""
        for answer in self.steps[step]:
            if answer.method == method and answer.path.endswith(path_end):
                return answer
        raise AssertionError(f"{self.server}: no {method} …{path_end} recorded in {step}")


def load(name: str) -> Recording:
    raw = json.loads((ANSWERS / name).read_text())
    steps: dict[str, list[Answer]] = {}
    for step, exchanges in raw["steps"].items():
        steps[step] = [_answer(e) for e in exchanges]
    return Recording(str(raw["server"]), steps)


def _answer(e: dict[str, Any]) -> Answer:
    body = json.dumps(e["json"]).encode() if "json" in e else str(e.get("text", "")).encode()
    return Answer(
        request=str(e["request"]),
        status=int(e.get("status", 0)),
        content_type=str(e.get("content_type", "")),
        body=body,
        error=e.get("error"),
    )


@dataclass
class Replay:
    """A MockTransport handler serving recorded answers; ``seen`` keeps the requests sent."""

    answers: list[Answer]
    base_paths: tuple[str, ...] = ("/nacos", "/eureka")
    seen: list[httpx.Request] = field(default_factory=list)
    _routes: dict[tuple[str, str], deque[Answer]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for answer in self.answers:
            self._routes.setdefault((answer.method, answer.path), deque()).append(answer)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        for base in self.base_paths:
            if path.startswith(base + "/"):
                path = path[len(base) :]
                break
        queue = self._routes.get((request.method, path))
        if not queue:
            raise AssertionError(f"no recorded answer for {request.method} {path}")
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        return answer.response(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def sent(self, method: str, path_end: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.method == method and r.url.path.endswith(path_end)]
