"""Real adapters and signals behind httpx.MockTransport, for fault-matrix and property tests.

A small in-memory Nacos 2.x or Eureka server, a Spring app (Prometheus or actuator metrics,
actuator shutdown) and a switch board of faults: any route can be made to answer something
else (status, body, gzip garbage, delay). Time is a FakeClock: a delay moves it, and a delay
longer than the request's timeout becomes httpx.ReadTimeout, as a real client would see.
No sockets: the app's port is a flag flipped by the shutdown request (the World is the
shutdown action's :class:`agent.shutdown.AppProbe`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from agent.config import EurekaServer, EurekaSettings, NacosSettings, ServerAddress
from agent.deadline import Deadline
from agent.drain.policy import DrainConfig
from agent.drain.signals import ActuatorMetricsSignal, PrometheusSignal, TrafficSignal
from agent.logs import configure, get_logger
from agent.registry.eureka import EurekaRegistry
from agent.registry.nacos import NacosHttp, NacosRegistry
from agent.sequence import Deps, Outcome, Plan, run_drain
from agent.shutdown import ActuatorShutdown
from agent.sidecar import AppHealth, Sidecar, SidecarOptions
from tests.fakes import FakeClock

IP, PORT = "10.0.0.5", 8080
APP = "http://app:8080/actuator"
NACOS = "http://nacos:8848/nacos"
EUREKA = "http://eureka:8761/eureka/"
EUREKA_ID = f"pod-1:orders:{PORT}"

RegistryKind = Literal["nacos", "eureka"]
MetricsKind = Literal["prometheus", "actuator"]

PLAN = Plan(
    budget=20,
    drain=DrainConfig(min_wait=1, max_wait=6, quiet_window=1, poll_interval=0.5),
    confirm_timeout=3,
    shutdown_timeout=3,
)


@dataclass(frozen=True)
class Answer:
    """What a route answers instead of the healthy server's answer."""

    status: int = 200
    body: bytes = b""
    gzip_garbage: bool = False  # Content-Encoding: gzip over bytes that are not gzip
    delay: float = 0.0  # seconds on the fake clock
    content_type: str = "application/json"

    def response(self) -> httpx.Response:
        headers = {"Content-Type": self.content_type}
        if self.gzip_garbage:
            headers["Content-Encoding"] = "gzip"
        # A stream, so that decoding happens in the client, as with a real server.
        return httpx.Response(self.status, headers=headers, stream=httpx.ByteStream(self.body))


def json_answer(value: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode())


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass
class World:
    """The servers' state and the faults, keyed by route: ``"GET /v1/ns/instance"`` etc."""

    clock: FakeClock
    registry_kind: RegistryKind = "nacos"
    metrics: MetricsKind = "prometheus"
    faults: dict[str, Answer] = field(default_factory=dict)
    # Applied to every request of a kind ("registry", "app") whose route has no own fault.
    kind_faults: dict[str, Answer] = field(default_factory=dict)
    registry_url: str | None = None  # another base URL for the registry (bad hosts)
    # Every registry call is answered (correctly) only after this many seconds on the clock; past
    # the request's timeout it is a ReadTimeout, and a write behind it is not applied.
    registry_delay: float = 0.0
    # Route -> how many times its answer is lost *after* the server applied the request: the
    # client sees a ReadTimeout (or a dropped connection, ``lost_as``) although the write landed.
    lost_answers: dict[str, int] = field(default_factory=dict)
    lost_as: Literal["timeout", "dropped"] = "timeout"
    # Route -> how many of its answers are lost too, once a ``lost_answers`` answer was lost
    # (a read-back after a lost write that is lost as well).
    lost_after: dict[str, int] = field(default_factory=dict)
    _lost_one: bool = False
    metrics_url: str | None = None
    enabled: bool = True
    stopped: bool = False
    shutdown_calls: int = 0
    requests: list[str] = field(default_factory=list)

    # --- the servers ---

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        kind = "app" if request.url.host == "app" else "registry"
        route = f"{request.method} {path}"
        self.requests.append(route)
        if kind == "app" and route.endswith("/actuator/shutdown"):
            self.shutdown_calls += 1
        if self.stopped and kind == "app":
            raise httpx.ConnectError("connection refused", request=request)
        query = request.url.query.decode()
        fault = (
            (self.faults.get(f"{route}?{query}") if query else None)
            or self.faults.get(route)
            or self.kind_faults.get(kind)
        )
        if fault is not None:
            self._wait(fault.delay, request)
            if kind == "app" and route.endswith("/actuator/shutdown") and fault.status < 400:
                self.stopped = True  # the app got the request and stops, whatever it answers
            return fault.response()
        if kind == "app":
            return self._app(request, route)
        self._wait(self.registry_delay, request)
        if self.registry_kind == "nacos":
            response = self._nacos(request, route)
        else:
            response = self._eureka(request, route)
        if self.lost_answers.get(route, 0) > 0:
            self.lost_answers[route] -= 1
            self._lost_one = True
            self._lose(request)
        if self._lost_one and self.lost_after.get(route, 0) > 0:
            self.lost_after[route] -= 1
            self._lose(request)
        return response

    def _lose(self, request: httpx.Request) -> None:
        """The server applied the request; its answer never reaches the client."""
        if self.lost_as == "dropped":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        self.clock.advance(request.extensions.get("timeout", {}).get("read") or 0.0)
        raise httpx.ReadTimeout("timed out", request=request)

    def _wait(self, delay: float, request: httpx.Request) -> None:
        timeout = request.extensions.get("timeout", {}).get("read")
        if timeout is not None and delay > timeout:
            self.clock.advance(timeout)
            raise httpx.ReadTimeout("timed out", request=request)
        self.clock.advance(delay)

    def _app(self, request: httpx.Request, route: str) -> httpx.Response:
        if route == "POST /actuator/shutdown":
            self.stopped = True
            return httpx.Response(200, json={"message": "Shutting down, bye..."})
        if route == "GET /actuator/prometheus":
            text = (
                'http_server_requests_seconds_count{uri="/work"} 42\n'
                'http_server_requests_active_seconds_active_count{uri="UNKNOWN"} 1\n'
            )
            return httpx.Response(200, text=text)
        if route == "GET /actuator/metrics/http.server.requests":
            if request.url.params.get("tag"):
                return httpx.Response(
                    200, json={"measurements": [{"statistic": "COUNT", "value": 42.0}]}
                )
            return httpx.Response(200, json={"availableTags": [{"tag": "uri", "values": ["/w"]}]})
        if route == "GET /actuator/metrics/http.server.requests.active":
            return httpx.Response(
                200, json={"measurements": [{"statistic": "ACTIVE_TASKS", "value": 1.0}]}
            )
        return httpx.Response(404)

    def _nacos_host(self) -> dict[str, Any]:
        return {"ip": IP, "port": PORT, "weight": 2.0, "enabled": self.enabled, "healthy": True}

    def _nacos(self, request: httpx.Request, route: str) -> httpx.Response:
        route = route.removeprefix("GET /nacos").removeprefix("PATCH /nacos")
        method = request.method
        if route == "/v3/admin/core/state":
            return httpx.Response(404)
        if route == "/v1/console/server/state":
            return httpx.Response(200, json={"version": "2.3.1"})
        if method == "GET" and route == "/v1/ns/instance":
            return httpx.Response(
                200, json={**self._nacos_host(), "clusterName": "DEFAULT", "metadata": {}}
            )
        if method == "PATCH" and route == "/v1/ns/instance":
            self.enabled = request.url.params.get("enabled") != "false"
            return httpx.Response(200, text="ok")
        if route == "/v1/ns/catalog/instances":
            return httpx.Response(200, json={"list": [self._nacos_host()]})
        if route == "/v1/ns/instance/list":
            hosts = [self._nacos_host()] if self.enabled else []
            return httpx.Response(200, json={"hosts": hosts})
        return httpx.Response(404)

    def _eureka_instance(self) -> dict[str, Any]:
        status = "UP" if self.enabled else "OUT_OF_SERVICE"
        return {
            "instanceId": EUREKA_ID,
            "app": "ORDERS",
            "ipAddr": IP,
            "port": {"$": PORT, "@enabled": "true"},
            "status": status,
            "overriddenStatus": "UNKNOWN" if self.enabled else "OUT_OF_SERVICE",
        }

    def _eureka(self, request: httpx.Request, route: str) -> httpx.Response:
        path = route.split(" ", 1)[1].removeprefix("/eureka/")
        method = request.method
        mine = f"apps/ORDERS/{EUREKA_ID}"
        if method == "GET" and path == "apps/ORDERS":
            return httpx.Response(
                200, json={"application": {"name": "ORDERS", "instance": [self._eureka_instance()]}}
            )
        if method == "GET" and path == mine:
            return httpx.Response(200, json={"instance": self._eureka_instance()})
        if method == "PUT" and path == f"{mine}/status":
            self.enabled = request.url.params.get("value") != "OUT_OF_SERVICE"
            return httpx.Response(200)
        if method == "GET" and path == "apps/delta":
            app = {"name": "ORDERS", "instance": [self._eureka_instance()]}
            return httpx.Response(200, json={"applications": {"application": [app]}})
        if method == "DELETE" and path == f"{mine}/status":
            self.enabled = True  # the override removed: the heartbeat's UP shows again
            return httpx.Response(200)
        if method == "DELETE" and path == mine:
            return httpx.Response(200)
        return httpx.Response(404)

    # --- the app's port, as the shutdown action probes it ---

    @property
    def port(self) -> int:
        return PORT

    def closed(self, deadline: Deadline) -> bool:
        """Closed once the app got the shutdown request."""
        return self.stopped

    # --- the agent, wired to it ---

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def registry(self, http: httpx.Client) -> NacosRegistry | EurekaRegistry:
        if self.registry_kind == "nacos":
            nacos = NacosSettings(
                servers=(ServerAddress(self.registry_url or NACOS),),
                namespace="public",
                group="DEFAULT_GROUP",
                cluster="DEFAULT",
                service="orders",
                ip=IP,
                port=PORT,
            )
            return NacosRegistry(nacos, NacosHttp(nacos, http, self.clock))
        eureka = EurekaSettings(
            servers=(EurekaServer(self.registry_url or EUREKA),),
            app="ORDERS",
            ip=IP,
            port=PORT,
            app_name="orders",
        )
        return EurekaRegistry(eureka, http)

    def signal(self, http: httpx.Client) -> TrafficSignal:
        if self.metrics == "prometheus":
            return PrometheusSignal(self.metrics_url or f"{APP}/prometheus", http)
        return ActuatorMetricsSignal(self.metrics_url or APP, http)

    def deps(self, http: httpx.Client) -> Deps:
        return Deps(
            registry=self.registry(http),
            signal=self.signal(http),
            action=ActuatorShutdown(APP, http, app=self),
            clock=self.clock,
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def strict_json(line: str) -> dict[str, Any]:
    """Parse one JSON line, refusing NaN and Infinity (which json.loads would accept)."""
    value = json.loads(line, parse_constant=_reject_constant)
    assert isinstance(value, dict)
    return value


@dataclass
class Run:
    outcome: Outcome | None
    error: BaseException | None
    summary: dict[str, Any] | None
    duration: float
    log_lines: list[str]


def run_world(world: World, *, via_sidecar: bool = False, plan: Plan = PLAN) -> Run:
    """Run the preStop sequence against ``world`` and print the summary as the CLI does.

    ``via_sidecar``: through the sidecar's single-flight run instead (it prints the summary
    itself and answers 500 when the run raised).
    """
    stream = io.StringIO()
    configure(log_format="json", stream=stream)
    http = world.client()
    deps = world.deps(http)
    start = world.clock.now()
    outcome: Outcome | None = None
    error: BaseException | None = None
    if via_sidecar:
        registry = deps.registry
        assert isinstance(registry, NacosRegistry | EurekaRegistry)
        sidecar = Sidecar(
            registry=registry,
            run_drain=lambda: run_drain(deps, plan),
            app=AppHealth(http, f"{APP}/health"),
            clock=world.clock,
            options=SidecarOptions(token="t"),
        )
        outcome, error = sidecar.flight.run()
    else:
        try:
            outcome = run_drain(deps, plan)
            # What `prestop drain` does with the outcome (agent/cli.py).
            get_logger().info("prestop_summary", **outcome.summary())
        except Exception as exc:
            error = exc
    duration = world.clock.now() - start
    lines = stream.getvalue().splitlines()
    summary = None
    for line in lines:
        if '"prestop_summary"' in line:
            summary = strict_json(line)
    return Run(outcome, error, summary, duration, lines)
