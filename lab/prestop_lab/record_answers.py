"""Record real servers' answers to the agent's own calls, for the fast adapter tests.

``python -m prestop_lab.record_answers tests/registry/answers`` starts, one after the other,
the real Nacos 2.x and 3.x (each with a Spring Cloud Alibaba provider and a subscribed
consumer) and two Eureka peers (with a Eureka-client provider), runs the agent's adapters and
signals against them through a recording transport, and writes one JSON file a server plus
the README that says which version and request produced each answer. Run it under
``flock /tmp/prestop-heavy.lock`` (it starts JVMs). Tokens are replaced; request bodies (the
login's password) are never stored.

Each file: ``{"server": "Nacos 2.3.1", "steps": {step: [exchange, ...]}}``, an exchange being
``{"request": "GET /v1/ns/instance?…", "status": 200, "content_type": …, "json"|"text": …}``
with the path relative to the server's base URL (``/nacos``, ``/eureka/``, the app's root).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx

from agent.config import EurekaServer, EurekaSettings, NacosSettings, ServerAddress
from agent.consumers import ConsumerSettings, ConsumerTracker
from agent.deadline import Deadline, SystemClock
from agent.drain.signals import ActuatorMetricsSignal, PrometheusSignal
from agent.exceptions import AgentError
from agent.registry.eureka import EurekaRegistry
from agent.registry.nacos import NacosHttp, NacosRegistry
from prestop_lab import procs
from prestop_lab.real import (
    NACOS_USER,
    SERVICE,
    EurekaPeers,
    JavaConsumer,
    NacosServer,
    registry_args,
    start_provider,
    wait_until,
)

_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_TOKEN = "<token>"


class Recording(httpx.BaseTransport):
    """A real transport that keeps every exchange under the current step's name."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.bases: list[str] = []
        self.step = "start"
        self.steps: dict[str, list[dict[str, Any]]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
            response.read()
        except httpx.HTTPError as exc:
            self._keep(request, {"error": type(exc).__name__})
            raise
        self._keep(request, _answer(response))
        return response

    def _keep(self, request: httpx.Request, answer: dict[str, Any]) -> None:
        url = str(request.url.copy_with(query=None))
        path = next((url[len(b) :] for b in self.bases if url.startswith(b)), url)
        query = request.url.query.decode()
        target = f"{request.method} {'/' + path.lstrip('/')}{'?' + query if query else ''}"
        self.steps.setdefault(self.step, []).append({"request": target, **answer})


def _answer(response: httpx.Response) -> dict[str, Any]:
    kind = response.headers.get("content-type", "")
    text = _JWT.sub(_TOKEN, response.text)
    out: dict[str, Any] = {"status": response.status_code, "content_type": kind}
    if "json" in kind:
        try:
            body = json.loads(text)
        except ValueError:
            return {**out, "text": text}
        return {**out, "json": _redacted(body)}
    return {**out, "text": text}


def _redacted(body: Any) -> Any:
    """The body with tokens and passwords replaced (a consumer's nacosdiscovery view shows
    the password it logs in with)."""
    if isinstance(body, dict):
        return {
            k: _TOKEN if k == "accessToken" else "<password>" if k == "password" else _redacted(v)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_redacted(v) for v in body]
    return body


def _dl(seconds: float = 10.0) -> Deadline:
    return Deadline.after(SystemClock(), seconds)


def _until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    wait_until(what, check, timeout)


def _traffic(port: int, n: int = 5) -> None:
    for _ in range(n):
        httpx.get(f"http://127.0.0.1:{port}/api/work", timeout=5)


def _signals(rec: Recording, http: httpx.Client, port: int) -> None:
    actuator = f"http://127.0.0.1:{port}/actuator"
    rec.step = "prometheus"
    PrometheusSignal(f"{actuator}/prometheus", http).read(_dl())
    rec.step = "actuator_metrics"
    ActuatorMetricsSignal(actuator, http).read(_dl())


def record_nacos(flavour: Literal["2.x", "3.x"]) -> tuple[str, dict[str, Any]]:
    rec = Recording()
    owned: list[procs.Proc] = []
    with NacosServer(flavour) as server, httpx.Client(transport=rec) as http:
        app_port = procs.free_port()
        argv = registry_args(server, fetch_s=1, renewal_s=1)
        owned.append(
            start_provider(
                app_port,
                argv,
                "--spring.cloud.nacos.discovery.weight=3",
                "--spring.cloud.nacos.discovery.metadata.zone=a",
            )
        )
        consumer = JavaConsumer(argv, rate=0, lb_cache_ttl_s=35)
        try:
            consumer.launch()
            rec.bases = [server.url, consumer.url, f"http://127.0.0.1:{app_port}"]
            settings = NacosSettings(
                servers=(ServerAddress(server.url),),
                namespace="public",
                group="DEFAULT_GROUP",
                cluster="DEFAULT",
                service=SERVICE,
                ip="127.0.0.1",
                port=app_port,
                username=NACOS_USER,
                password=server.password,
            )
            nacos_http = NacosHttp(settings, http, SystemClock())
            reg = NacosRegistry(settings, nacos_http)
            rec.step = "connect"
            version = reg.connect(_dl())
            _until("provider listed", lambda: bool(server.consumer_view()))
            rec.step = "get_instance"
            reg.get_instance(_dl())
            rec.step = "visible"
            reg.visible_to_consumers(_dl())
            rec.step = "subscribers"
            _until("subscriber listed", lambda: bool(reg.subscribers(_dl())))
            rec.steps["subscribers"] = rec.steps["subscribers"][-1:]
            tracker = ConsumerTracker(
                reg,
                ConsumerSettings(actuator=f"{consumer.url}/actuator"),
                http,
                SystemClock(),
                "127.0.0.1",
                app_port,
                SERVICE,
            )
            rec.step = "consumer_holding"
            tracker.probe(_dl())
            rec.step = "take_out"
            reg.take_out(_dl())
            rec.step = "invisible"
            _until("invisible", lambda: not reg.visible_to_consumers(_dl()))
            rec.steps["invisible"] = rec.steps["invisible"][-1:]
            rec.step = "consumer_let_go"
            _until("consumer let go", lambda: _poll(tracker), 30)
            rec.steps["consumer_let_go"] = _last_round(rec.steps["consumer_let_go"])
            rec.step = "put_back"
            reg.put_back(_dl())
            _traffic(app_port)
            _signals(rec, http, app_port)
            rec.step = "not_registered"
            ghost = dataclasses.replace(settings, ip="10.255.255.1")
            NacosRegistry(ghost, NacosHttp(ghost, http, SystemClock())).get_instance(_dl())
            rec.step = "wrong_password"
            wrong = dataclasses.replace(settings, password="not-the-password")
            with contextlib.suppress(AgentError):
                NacosRegistry(wrong, NacosHttp(wrong, http, SystemClock())).connect(_dl())
        finally:
            consumer.kill()
            for proc in owned:
                proc.kill()
    return f"Nacos {version.split()[1]}", rec.steps


def _poll(tracker: ConsumerTracker) -> bool:
    tracker.poll(_dl())
    time.sleep(0.3)
    return tracker.knowledge_at is not None


def _last_round(exchanges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From the polls until the consumer let go: its last view and what followed."""
    views = [i for i, e in enumerate(exchanges) if "nacosdiscovery" in e["request"]]
    return exchanges[views[-1] :] if views else exchanges


def record_eureka() -> tuple[str, dict[str, Any]]:
    rec = Recording()
    with EurekaPeers(cache_interval_s=1.0) as peers, httpx.Client(transport=rec) as http:
        rec.bases = list(peers.urls)
        app_port = procs.free_port()
        proc = start_provider(app_port, registry_args(peers, fetch_s=1, renewal_s=1))
        instance_id = f"127.0.0.1:{SERVICE}:{app_port}"
        try:
            _until("registered", lambda: peers.instance(SERVICE, instance_id) is not None)
            settings = EurekaSettings(
                servers=tuple(EurekaServer(u) for u in peers.urls),
                app=SERVICE.upper(),
                ip="127.0.0.1",
                port=app_port,
                app_name=SERVICE,
            )
            reg = EurekaRegistry(settings, http)
            rec.step = "connect"
            reg.connect(_dl())
            rec.step = "get_instance"
            _until("in apps/APP", lambda: reg.get_instance(_dl()) is not None)
            rec.steps["get_instance"] = rec.steps["get_instance"][-3:]
            rec.step = "serving"
            _until("serving", lambda: reg.serving(_dl()))
            rec.steps["serving"] = rec.steps["serving"][-2:]
            rec.step = "take_out"
            reg.take_out(_dl())
            rec.step = "invisible"
            _until("invisible", lambda: not reg.visible_to_consumers(_dl()))
            rec.steps["invisible"] = rec.steps["invisible"][-2:]
            rec.step = "put_back"
            reg.put_back(_dl())
            rec.step = "after_stop"
            proc.kill()
            reg.after_stop(_dl())
            rec.step = "not_registered"
            ghost = dataclasses.replace(settings, ip="10.255.255.1")
            EurekaRegistry(ghost, http).get_instance(_dl())
        finally:
            proc.kill()
    return "Eureka (Spring Cloud Netflix 2025.0.0 eureka-server, Spring Boot 3.5.7)", rec.steps


def _name(server: str) -> str:
    return server.split(" (")[0].lower().replace(" ", "-") + ".json"


# Who answers the requests that do not go to the registry (lab/java's pom.xml files).
_CONSUMER = "the lab's consumer (Spring Boot 3.5.7, Spring Cloud 2025.0.0, SCA 2025.0.0.0)"
_PROVIDER = "the lab's provider (Spring Boot 3.5.7, Micrometer Prometheus registry)"


def _who(server: str, request: str) -> str:
    path = request.split(" ", 1)[1]
    if path.startswith(("/actuator/nacosdiscovery", "/actuator/caches")):
        return f"{_CONSUMER}, subscribed to {server}"
    if path.startswith("/actuator/"):
        return _PROVIDER
    return server


def write_readme(out: Path, recorded: list[tuple[str, dict[str, Any]]]) -> None:
    lines = [
        "# Recorded server answers",
        "",
        "Written by `python -m prestop_lab.record_answers tests/registry/answers` (run under",
        "`flock /tmp/prestop-heavy.lock`): the agent's own adapters, signals and consumer",
        "tracker against the real servers and apps of `lab/java`, through a recording",
        "transport; replayed by `tests/registry/replay.py`. Tokens are replaced by `<token>`;",
        "request bodies (the login's password) are not kept. One line per answer: file, step,",
        "who answered, and the request.",
        "",
    ]
    for server, steps in recorded:
        for step, exchanges in steps.items():
            for e in exchanges:
                who = _who(server, e["request"])
                lines.append(f"- `{_name(server)}` {step}: {who}: `{e['request']}`")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("tests/registry/answers")
    out.mkdir(parents=True, exist_ok=True)
    recorded: list[tuple[str, dict[str, Any]]] = []
    recorders: list[Callable[[], tuple[str, dict[str, Any]]]] = [
        lambda: record_nacos("2.x"),
        lambda: record_nacos("3.x"),
        record_eureka,
    ]
    for record in recorders:
        try:
            server, steps = record()
        except Exception:
            # One server failing must not lose the others' recordings.
            traceback.print_exc()
            continue
        recorded.append((server, steps))
        body = {"server": server, "steps": steps}
        (out / _name(server)).write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        print(f"recorded {server}", flush=True)
    write_readme(out, recorded)
    return 0 if len(recorded) == len(recorders) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
