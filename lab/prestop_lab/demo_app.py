"""A Spring-Boot-like demo service for the lab: business endpoint, actuator, graceful shutdown.

What it imitates, because the agent relies on it:

* ``/actuator/prometheus`` with Micrometer's names; the active-requests gauge and Tomcat's busy
  threads include the scrape itself, and ``/actuator/**`` requests are counted too;
* ``POST /actuator/shutdown`` answers, then closes the context 0.5 s later (Spring does so);
* graceful shutdown (``server.shutdown=graceful``): the listening socket closes at once, so new
  connections are refused; requests in flight finish; a request arriving afterwards on an idle
  keep-alive connection is not served (Tomcat pauses its connector); then the instance
  deregisters (Spring Cloud's ``AbstractAutoServiceRegistration`` does it on close);
* registration through the emulator's lab API, owned by this process like a gRPC client.

Run: ``python -m prestop_lab.demo_app --port 8080 --nacos-addr 127.0.0.1:8848 --service demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx


@dataclass
class AppConfig:
    port: int
    host: str = "127.0.0.1"
    management_port: int | None = None
    latency_ms: float = 20.0
    latency_tail: float = 0.0
    tail_ms: float = 1000.0
    nacos_addr: str | None = None
    service: str = "demo"
    ip: str = "127.0.0.1"
    weight: float = 1.0
    group: str = "DEFAULT_GROUP"
    namespace: str = "public"
    shutdown_timeout: float = 30.0
    ignore_shutdown: bool = False
    ignore_sigterm: bool = False
    seed: int | None = None
    # management.endpoints.web.exposure.include; an endpoint left out answers 404.
    expose: str = "health,prometheus,metrics,shutdown"
    eureka_url: str | None = None  # register in Eureka instead of (or besides) Nacos
    eureka_renewal: float = 30.0  # heartbeat interval (scaled down in the lab)


@dataclass
class Metrics:
    """Micrometer-style counters; one lock, read by the Prometheus endpoint."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Condition = field(init=False)
    counts: dict[tuple[str, str, int], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0.0, 0.0])
    )  # (method, uri, status) -> [count, sum, max]
    active: int = 0
    active_business: int = 0
    connections: int = 0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.done = threading.Condition(self.lock)

    def begin(self, business: bool) -> None:
        with self.lock:
            self.active += 1
            self.active_business += business

    def end(self, business: bool, method: str, uri: str, status: int, seconds: float) -> None:
        with self.lock:
            self.active -= 1
            self.active_business -= business
            entry = self.counts[(method, uri, status)]
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)
            self.done.notify_all()

    def prometheus(self, port: int) -> str:
        with self.lock:
            lines = [
                "# HELP http_server_requests_seconds  ",
                "# TYPE http_server_requests_seconds summary",
            ]
            maxes = []
            for (method, uri, status), (count, total, peak) in sorted(self.counts.items()):
                outcome = (
                    "SUCCESS"
                    if status < 400
                    else "SERVER_ERROR"
                    if status >= 500
                    else ("CLIENT_ERROR")
                )
                labels = (
                    f'error="none",exception="none",method="{method}",outcome="{outcome}",'
                    f'status="{status}",uri="{uri}"'
                )
                lines.append(f"http_server_requests_seconds_count{{{labels}}} {count:g}")
                lines.append(f"http_server_requests_seconds_sum{{{labels}}} {total:.6f}")
                maxes.append(f"http_server_requests_seconds_max{{{labels}}} {peak:.6f}")
            lines += [
                "# HELP http_server_requests_seconds_max  ",
                "# TYPE http_server_requests_seconds_max gauge",
                *maxes,
                "# HELP http_server_requests_active_seconds_active_count  ",
                "# TYPE http_server_requests_active_seconds_active_count gauge",
                # Micrometer's LongTaskTimer counts every request in progress, this scrape too.
                'http_server_requests_active_seconds_active_count{exception="none",method="GET",'
                f'outcome="SUCCESS",status="200",uri="UNKNOWN"}} {self.active}',
                "# HELP tomcat_threads_busy_threads  ",
                "# TYPE tomcat_threads_busy_threads gauge",
                f'tomcat_threads_busy_threads{{name="http-nio-{port}"}} {self.active}',
                "# HELP tomcat_connections_current_connections  ",
                "# TYPE tomcat_connections_current_connections gauge",
                f'tomcat_connections_current_connections{{name="http-nio-{port}"}} '
                f"{self.connections}",
                "# HELP process_uptime_seconds The uptime of the Java virtual machine",
                "# TYPE process_uptime_seconds gauge",
                f"process_uptime_seconds {time.monotonic() - self.started:.3f}",
            ]
        return "\n".join(lines) + "\n"

    def actuator_json(self, uri_filter: str | None) -> dict[str, Any]:
        with self.lock:
            rows = [
                (k, v) for k, v in self.counts.items() if uri_filter is None or k[1] == uri_filter
            ]
            uris = sorted({k[1] for k in self.counts})
            statuses = sorted({str(k[2]) for k in self.counts})
        return {
            "name": "http.server.requests",
            "baseUnit": "seconds",
            "measurements": [
                {"statistic": "COUNT", "value": sum(v[0] for _, v in rows)},
                {"statistic": "TOTAL_TIME", "value": sum(v[1] for _, v in rows)},
                {"statistic": "MAX", "value": max((v[2] for _, v in rows), default=0.0)},
            ],
            "availableTags": [
                {"tag": "uri", "values": uris},
                {"tag": "status", "values": statuses},
                {"tag": "method", "values": ["GET", "POST"]},
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 75  # idle keep-alive connections, longer than clients' pool expiry
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.app.metrics.lock:
            self.server.app.metrics.connections += 1

    def finish(self) -> None:
        with self.server.app.metrics.lock:
            self.server.app.metrics.connections -= 1
        super().finish()

    def handle_one_request(self) -> None:
        # Once stopping, a new request on a kept-alive connection is not served: Tomcat's
        # paused connector closes it. Requests already running are not affected.
        if self.server.app.stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def _respond(self, status: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.server.app.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        app = self.server.app
        parts = urlsplit(self.path)
        uri, query = parts.path, dict(parse_qsl(parts.query))
        business = not uri.startswith("/actuator")
        start = time.monotonic()
        app.metrics.begin(business)
        status = 500
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status = self._route(app, self.command, uri, query)
        finally:
            app.metrics.end(business, self.command, uri, status, time.monotonic() - start)

    def _route(self, app: DemoApp, method: str, uri: str, query: dict[str, str]) -> int:
        if method == "GET" and uri == "/work":
            ms = float(query["ms"]) if "ms" in query else app.latency()
            time.sleep(ms / 1000.0)
            self._respond(200, json.dumps({"instance": app.instance, "ms": ms}))
            return 200
        if uri.startswith("/actuator"):
            exposed = {e.strip() for e in app.config.expose.split(",")}
            endpoint = uri.split("/")[2] if uri.count("/") >= 2 else ""
            if method == "GET" and uri in ("/actuator", "/actuator/"):
                # Spring Boot's discovery page links every exposed endpoint.
                base = f"http://127.0.0.1:{app.config.port}/actuator"
                links = {"self": {"href": base, "templated": False}}
                links |= {e: {"href": f"{base}/{e}", "templated": False} for e in sorted(exposed)}
                self._respond(200, json.dumps({"_links": links}))
                return 200
            if endpoint not in exposed:
                self._respond(404, '{"status":404,"error":"Not Found"}')
                return 404
        if method == "GET" and uri in ("/actuator/health", "/actuator/health/readiness"):
            if app.stopping.is_set():
                self._respond(503, '{"status":"OUT_OF_SERVICE"}')
                return 503
            self._respond(200, '{"status":"UP"}')
            return 200
        if method == "GET" and uri == "/actuator/prometheus":
            text = app.metrics.prometheus(app.config.port)
            self._respond(200, text, "text/plain; version=0.0.4; charset=utf-8")
            return 200
        if method == "GET" and uri == "/actuator/metrics/http.server.requests":
            tag = query.get("tag", "")
            uri_filter = tag.split(":", 1)[1] if tag.startswith("uri:") else None
            self._respond(200, json.dumps(app.metrics.actuator_json(uri_filter)))
            return 200
        if method == "POST" and uri == "/actuator/shutdown":
            self._respond(200, '{"message":"Shutting down, bye..."}')
            if not app.config.ignore_shutdown:
                # Spring Boot's ShutdownEndpoint closes the context on a new thread after 500 ms.
                threading.Timer(0.5, app.shutdown).start()
            return 200
        self._respond(404, '{"status":404,"error":"Not Found"}')
        return 404

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: DemoApp


class DemoApp:
    """The app: one or two HTTP servers, registration, graceful shutdown."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.instance = f"{config.ip}:{config.port}"
        self._random = random.Random(config.seed)
        self._servers: list[_Server] = []
        self._client_id: str | None = None
        self._http: httpx.Client | None = None
        self._shutdown_lock = threading.Lock()
        self._eureka: Any = None

    @property
    def port(self) -> int:
        port: int = self._servers[0].server_address[1]
        return port

    def latency(self) -> float:
        if self.config.latency_tail and self._random.random() < self.config.latency_tail:
            return self.config.tail_ms
        return (
            self._random.expovariate(1.0 / self.config.latency_ms)
            if (self.config.latency_ms > 0)
            else 0.0
        )

    def start(self) -> None:
        ports = [self.config.port]
        if self.config.management_port:
            ports.append(self.config.management_port)
        for port in ports:
            server = _Server((self.config.host, port), _Handler)
            server.app = self
            self._servers.append(server)
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()
        if self.config.port == 0:
            self.config.port = self.port
            self.instance = f"{self.config.ip}:{self.port}"
        if self.config.nacos_addr:
            self._register()
        if self.config.eureka_url:
            from prestop_lab.eureka_client import EurekaInstance

            self._eureka = EurekaInstance(
                self.config.eureka_url,
                self.config.service,
                self.config.ip,
                self.config.port,
                renewal_interval=self.config.eureka_renewal,
                lease_duration=3 * self.config.eureka_renewal,
            )
            self._eureka.start()

    def _nacos(self, path: str) -> str:
        addr = self.config.nacos_addr or ""
        base = addr if "://" in addr else f"http://{addr}"
        return base.rstrip("/") + "/nacos/lab/v1" + path

    def _register(self) -> None:
        self._http = httpx.Client(timeout=5.0)
        body = {
            "service": self.config.service,
            "ip": self.config.ip,
            "port": self.config.port,
            "group": self.config.group,
            "namespace": self.config.namespace,
            "weight": self.config.weight,
            "metadata": {"preserved.register.source": "SPRING_CLOUD"},
        }
        response = self._http.post(self._nacos("/clients"), json=body)
        response.raise_for_status()
        self._client_id = str(response.json()["clientId"])
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self.stopped.wait(1.0):
            if self._http is None or self._client_id is None:
                return
            try:
                self._http.put(self._nacos(f"/clients/{self._client_id}/beat"))
            except (httpx.HTTPError, RuntimeError):
                # The registry may be down for a moment, or we are closing: keep going.
                continue

    def shutdown(self) -> None:
        """Graceful: refuse new connections, finish in-flight, deregister, mark stopped."""
        with self._shutdown_lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()  # the port refuses connections from here on
        end = time.monotonic() + self.config.shutdown_timeout
        with self.metrics.done:
            while self.metrics.active > 0 and time.monotonic() < end:
                self.metrics.done.wait(min(0.05, max(0.0, end - time.monotonic())))
        if self._http is not None and self._client_id is not None:
            # If this fails the emulator drops us anyway once the beats stop.
            with contextlib.suppress(httpx.HTTPError):
                self._http.delete(self._nacos(f"/clients/{self._client_id}"))
        if self._eureka is not None:
            self._eureka.stop()  # Spring: DOWN, then cancel, after the web server stopped
        self.stopped.set()
        if self._http is not None:
            self._http.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m prestop_lab.demo_app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--management-port", type=int)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--latency-tail", type=float, default=0.0)
    p.add_argument("--tail-ms", type=float, default=1000.0)
    p.add_argument("--nacos-addr")
    p.add_argument("--eureka-url")
    p.add_argument("--eureka-renewal", type=float, default=30.0)
    p.add_argument("--service", default="demo")
    p.add_argument("--ip", default="127.0.0.1")
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--group", default="DEFAULT_GROUP")
    p.add_argument("--namespace", default="public")
    p.add_argument("--shutdown-timeout", type=float, default=30.0)
    p.add_argument("--ignore-shutdown", action="store_true")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--expose", default=AppConfig.expose, help="exposed actuator endpoints")
    args = p.parse_args(argv)
    app = DemoApp(AppConfig(**vars(args)))

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM and app.config.ignore_sigterm:
            return
        threading.Thread(target=app.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.start()
    print(f"DEMO_APP_READY port={app.port}", flush=True)
    while not app.wait(0.5):
        pass
    print("DEMO_APP_STOPPED", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
