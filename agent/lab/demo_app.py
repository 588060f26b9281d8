"""A Spring-Boot-like demo service for the lab: business endpoint, actuator, graceful shutdown.

What it imitates, because the agent relies on it:

* ``/actuator/prometheus`` with Micrometer's names; the active-requests gauge and Tomcat's busy
  threads include the scrape itself, and ``/actuator/**`` requests are counted too;
* ``/actuator/metrics/http.server.requests[.active]`` with ``?tag=key:value`` filters, answering
  404 while no meter matches (as Spring does before the first request completes);
* ``POST /actuator/shutdown`` answers, then closes the context 0.5 s later (Spring does so);
* graceful shutdown (``server.shutdown=graceful``): the listening socket closes at once, so new
  connections are refused; requests in flight finish; a request arriving afterwards on an idle
  keep-alive connection is not served (Tomcat pauses its connector); then the instance
  deregisters (Spring Cloud's ``AbstractAutoServiceRegistration`` does it on close);
* registration through the emulator's lab API, owned by this process like a gRPC client, which
  registers again if the registry forgot it (the Nacos client's redo after a reconnect);
* ``--management-port``: actuator on a second server only, as ``management.server.port`` does.

Run: ``python -m agent.lab.demo_app --port 8080 --nacos-addr 127.0.0.1:8848 --service demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

# Tag keys of Spring Boot 3's http.server.requests timer, in Micrometer's (sorted) order.
TAG_KEYS = ("error", "exception", "method", "outcome", "status", "uri")
# Spring's LongTaskTimer tags are fixed when a request starts, before any of them is known.
ACTIVE_TAGS = {
    "exception": "none",
    "method": "GET",
    "outcome": "SUCCESS",
    "status": "200",
    "uri": "UNKNOWN",
}
REGISTER_WITHIN = 10.0  # seconds: the registry may still be starting when the app does


@dataclass
class AppConfig:
    port: int
    host: str = "127.0.0.1"
    management_port: int | None = None  # None: actuator on the main port
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


def outcome_of(status: int) -> str:
    return {1: "INFORMATIONAL", 2: "SUCCESS", 3: "REDIRECTION", 4: "CLIENT_ERROR"}.get(
        status // 100, "SERVER_ERROR"
    )


def _labels(tags: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(tags.items()))


@dataclass
class Metrics:
    """Micrometer-style meters behind one lock, read by the actuator endpoints."""

    main_connector: str = "http-nio-0"
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Condition = field(init=False)
    # (method, uri, status, exception) -> [count, total seconds, max seconds]
    timers: dict[tuple[str, str, int, str], list[float]] = field(default_factory=dict)
    # token -> (start, connector): every request being handled, actuator ones included
    in_flight: dict[int, tuple[float, str]] = field(default_factory=dict)
    connections: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.done = threading.Condition(self.lock)

    @property
    def active(self) -> int:
        with self.lock:
            return len(self.in_flight)

    def begin(self, connector: str) -> int:
        with self.lock:
            token = next(self._tokens)
            self.in_flight[token] = (time.monotonic(), connector)
            return token

    def end(self, token: int, method: str, uri: str, status: int, exception: str) -> None:
        with self.lock:
            start, _ = self.in_flight.pop(token)
            seconds = time.monotonic() - start
            # Micrometer's max decays over a 2-minute window; lab runs are shorter than that.
            entry = self.timers.setdefault((method, uri, status, exception), [0.0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)
            self.done.notify_all()

    def _tags(self, key: tuple[str, str, int, str]) -> dict[str, str]:
        method, uri, status, exception = key
        return {
            "error": exception,
            "exception": exception,
            "method": method,
            "outcome": outcome_of(status),
            "status": str(status),
            "uri": uri,
        }

    def prometheus(self) -> str:
        now = time.monotonic()
        with self.lock:
            timers = sorted(self.timers.items())
            durations = [now - start for start, _ in self.in_flight.values()]
            busy = sum(1 for _, c in self.in_flight.values() if c == self.main_connector)
            connections = self.connections[self.main_connector]
        counts: list[str] = []
        maxes: list[str] = []
        for key, (count, total, peak) in timers:
            labels = _labels(self._tags(key))
            counts.append(f"http_server_requests_seconds_count{{{labels}}} {count!r}")
            counts.append(f"http_server_requests_seconds_sum{{{labels}}} {total!r}")
            maxes.append(f"http_server_requests_seconds_max{{{labels}}} {peak!r}")
        active = _labels(ACTIVE_TAGS)
        tomcat = f'name="{self.main_connector}"'
        lines = [
            "# HELP http_server_requests_seconds  ",
            "# TYPE http_server_requests_seconds summary",
            *counts,
            "# HELP http_server_requests_seconds_max  ",
            "# TYPE http_server_requests_seconds_max gauge",
            *maxes,
            "# HELP http_server_requests_active_seconds_max  ",
            "# TYPE http_server_requests_active_seconds_max gauge",
            f"http_server_requests_active_seconds_max{{{active}}} {max(durations, default=0.0)!r}",
            "# HELP http_server_requests_active_seconds  ",
            "# TYPE http_server_requests_active_seconds summary",
            f"http_server_requests_active_seconds_active_count{{{active}}} "
            f"{float(len(durations))!r}",
            f"http_server_requests_active_seconds_duration_sum{{{active}}} {sum(durations)!r}",
            "# HELP tomcat_threads_busy_threads  ",
            "# TYPE tomcat_threads_busy_threads gauge",
            f"tomcat_threads_busy_threads{{{tomcat}}} {float(busy)!r}",
            "# HELP tomcat_threads_config_max_threads  ",
            "# TYPE tomcat_threads_config_max_threads gauge",
            f"tomcat_threads_config_max_threads{{{tomcat}}} 200.0",
            "# HELP tomcat_connections_current_connections  ",
            "# TYPE tomcat_connections_current_connections gauge",
            f"tomcat_connections_current_connections{{{tomcat}}} {float(connections)!r}",
            "# HELP process_uptime_seconds The uptime of the Java virtual machine",
            "# TYPE process_uptime_seconds gauge",
            f"process_uptime_seconds {now - self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"

    def requests_json(self, filters: list[tuple[str, str]]) -> dict[str, Any] | None:
        """``/actuator/metrics/http.server.requests``; None when no meter matches (404)."""
        with self.lock:
            rows = [(self._tags(k), v) for k, v in self.timers.items()]
        rows = [(t, v) for t, v in rows if all(t.get(k) == want for k, want in filters)]
        if not rows:
            return None
        filtered = {k for k, _ in filters}
        return {
            "name": "http.server.requests",
            "baseUnit": "seconds",
            "measurements": [
                {"statistic": "COUNT", "value": sum(v[0] for _, v in rows)},
                {"statistic": "TOTAL_TIME", "value": sum(v[1] for _, v in rows)},
                {"statistic": "MAX", "value": max(v[2] for _, v in rows)},
            ],
            "availableTags": [
                {"tag": k, "values": sorted({t[k] for t, _ in rows})}
                for k in TAG_KEYS
                if k not in filtered
            ],
        }

    def active_json(self, filters: list[tuple[str, str]]) -> dict[str, Any] | None:
        """``/actuator/metrics/http.server.requests.active`` (a LongTaskTimer)."""
        if any(ACTIVE_TAGS.get(k) != want for k, want in filters):
            return None
        now = time.monotonic()
        with self.lock:
            durations = [now - start for start, _ in self.in_flight.values()]
        filtered = {k for k, _ in filters}
        return {
            "name": "http.server.requests.active",
            "baseUnit": "seconds",
            "measurements": [
                {"statistic": "ACTIVE_TASKS", "value": float(len(durations))},
                {"statistic": "DURATION", "value": sum(durations)},
                {"statistic": "MAX", "value": max(durations, default=0.0)},
            ],
            "availableTags": [
                {"tag": k, "values": [v]} for k, v in ACTIVE_TAGS.items() if k not in filtered
            ],
        }


class _Rejected(Exception):
    """The request arrived after the connector paused: close without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Tomcat's default keep-alive timeout; longer than clients' pool expiry, as deployed.
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        # Spares a thread the wait for a request that would be turned away anyway.
        if self.server.app.stopping.is_set():
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        except _Rejected:
            self.close_connection = True

    def _respond(
        self, status: int, body: str | dict[str, Any], ctype: str = "application/json"
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.server.app.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _not_found(self, path: str) -> tuple[int, str]:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._respond(404, {"timestamp": stamp, "status": 404, "error": "Not Found", "path": path})
        # Spring tags unmapped requests "/**" (or NOT_FOUND); actuator paths keep their own so
        # that a probe of an endpoint that is not exposed stays out of the business count,
        # which the agent's signal tests expect of this app.
        return 404, path if path.startswith("/actuator") else "NOT_FOUND"

    def _serve(self) -> None:
        app = self.server.app
        # The request line was read while blocked on an idle keep-alive connection; if the
        # connector paused meanwhile, this request is not in flight and must not be served.
        if app.stopping.is_set():
            raise _Rejected
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query)
        token = app.metrics.begin(self.server.connector)
        status, uri, exception = 500, parts.path, "none"
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, uri = self._route(app, self.command, parts.path, query)
        except OSError:
            raise  # the client went away: nobody to answer
        except Exception as exc:
            exception = type(exc).__name__
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._respond(500, {"status": 500, "error": "Internal Server Error"})
        finally:
            app.metrics.end(token, self.command, uri, status, exception)

    def _route(
        self, app: DemoApp, method: str, path: str, query: list[tuple[str, str]]
    ) -> tuple[int, str]:
        actuator = path == "/actuator" or path.startswith("/actuator/")
        if not (self.server.serves_actuator if actuator else self.server.serves_business):
            return self._not_found(path)
        params = dict(query)
        if method == "GET" and path == "/work":
            ms = float(params["ms"]) if "ms" in params else app.latency()
            time.sleep(ms / 1000.0)
            self._respond(200, {"instance": app.instance, "ms": ms})
            return 200, path
        if method == "GET" and path in ("/actuator/health", "/actuator/health/readiness"):
            if app.stopping.is_set():
                self._respond(503, {"status": "OUT_OF_SERVICE"})
                return 503, path
            self._respond(200, {"status": "UP"})
            return 200, path
        if method == "GET" and path == "/actuator/health/liveness":
            self._respond(200, {"status": "UP"})
            return 200, path
        if method == "GET" and path == "/actuator/prometheus":
            text = app.metrics.prometheus()
            self._respond(200, text, "text/plain; version=0.0.4; charset=utf-8")
            return 200, path
        if method == "GET" and path == "/actuator/metrics":
            names = ["http.server.requests", "http.server.requests.active"]
            self._respond(200, {"names": names})
            return 200, path
        if method == "GET" and path.startswith("/actuator/metrics/"):
            return self._metric(app, path, query)
        if method == "POST" and path == "/actuator/shutdown":
            self._respond(200, {"message": "Shutting down, bye..."})
            if not app.config.ignore_shutdown:
                # Spring Boot's ShutdownEndpoint closes the context on a new thread after 500 ms.
                timer = threading.Timer(0.5, app.shutdown)
                timer.daemon = True
                timer.start()
            return 200, path
        return self._not_found(path)

    def _metric(self, app: DemoApp, path: str, query: list[tuple[str, str]]) -> tuple[int, str]:
        uri = "/actuator/metrics/{requiredMetricName}"
        filters = []
        for key, value in query:
            if key != "tag":
                continue
            name, sep, want = value.partition(":")
            if not sep:
                self._respond(400, {"status": 400, "error": "Bad Request", "path": path})
                return 400, uri
            filters.append((name, want))
        metric = path.removeprefix("/actuator/metrics/")
        body = None
        if metric == "http.server.requests":
            body = app.metrics.requests_json(filters)
        elif metric == "http.server.requests.active":
            body = app.metrics.active_json(filters)
        if body is None:
            self._respond(404, "")
            return 404, uri
        self._respond(200, body)
        return 200, uri

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, app: DemoApp, host: str, port: int, business: bool, actuator: bool):
        self.app = app
        self.serves_business = business
        self.serves_actuator = actuator
        self.connector = ""
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__((host, port), _Handler)
        self.connector = f"http-nio-{self.server_address[1]}"

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
        with self.app.metrics.lock:
            self.app.metrics.connections[self.connector] += 1 if add else -1

    def drop_connections(self) -> None:
        """Tomcat stopping: every connection still open is closed under its reader."""
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            # shutdown, not close: the handler thread still owns the descriptor.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away, or we dropped it while stopping
        super().handle_error(request, client_address)


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
        self._beats_stop = threading.Event()
        self._beats: threading.Thread | None = None
        self._shutdown_lock = threading.Lock()

    @property
    def port(self) -> int:
        port: int = self._servers[0].server_address[1]
        return port

    @property
    def management_port(self) -> int:
        port: int = self._servers[-1].server_address[1]
        return port

    @property
    def client_id(self) -> str | None:
        return self._client_id

    def latency(self) -> float:
        if self.config.latency_tail and self._random.random() < self.config.latency_tail:
            return self.config.tail_ms
        if self.config.latency_ms <= 0:
            return 0.0
        return self._random.expovariate(1.0 / self.config.latency_ms)

    def start(self) -> None:
        c = self.config
        separate = c.management_port is not None
        self._servers.append(_Server(self, c.host, c.port, True, not separate))
        if c.management_port is not None:
            self._servers.append(_Server(self, c.host, c.management_port, False, True))
        self.metrics.main_connector = self._servers[0].connector
        c.port = self.port
        if separate:
            c.management_port = self.management_port
        self.instance = f"{c.ip}:{c.port}"
        for server in self._servers:
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=server.connector,
                daemon=True,
            ).start()
        if c.nacos_addr:
            try:
                self._register_within(REGISTER_WITHIN)
            except BaseException:
                self._close_servers()
                raise
            self._beats = threading.Thread(target=self._beat, name="nacos-beat", daemon=True)
            self._beats.start()

    # --- registry ---

    def _nacos(self, path: str) -> str:
        addr = self.config.nacos_addr or ""
        base = addr if "://" in addr else f"http://{addr}"
        return base.rstrip("/") + "/nacos/lab/v1" + path

    def _register(self) -> None:
        assert self._http is not None
        c = self.config
        body = {
            "service": c.service,
            "ip": c.ip,
            "port": c.port,
            "group": c.group,
            "namespace": c.namespace,
            "weight": c.weight,
            "metadata": {"preserved.register.source": "SPRING_CLOUD"},
        }
        response = self._http.post(self._nacos("/clients"), json=body)
        response.raise_for_status()
        self._client_id = str(response.json()["clientId"])

    def _register_within(self, seconds: float) -> None:
        self._http = httpx.Client(timeout=2.0, trust_env=False)
        end = time.monotonic() + seconds
        while True:
            try:
                self._register()
                return
            except (httpx.HTTPError, ValueError, KeyError):
                if time.monotonic() >= end:
                    self._http.close()
                    raise
                time.sleep(0.2)

    def _beat(self) -> None:
        while not self._beats_stop.wait(1.0):
            if self._http is None or self._client_id is None:
                return
            try:
                r = self._http.put(self._nacos(f"/clients/{self._client_id}/beat"))
                if r.status_code == 404 and not self._beats_stop.is_set():
                    # The registry dropped us (missed beats, or it restarted): the Nacos
                    # client re-registers when its connection comes back.
                    self._register()
            except (httpx.HTTPError, ValueError, KeyError):
                continue  # the registry may be down for a moment; beat again later

    # --- shutdown ---

    def _close_servers(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def shutdown(self) -> None:
        """Graceful: refuse new connections, finish in-flight, deregister, mark stopped."""
        with self._shutdown_lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
        self._close_servers()  # the ports refuse connections from here on
        end = time.monotonic() + self.config.shutdown_timeout
        with self.metrics.done:
            while self.metrics.in_flight and time.monotonic() < end:
                self.metrics.done.wait(min(0.05, max(0.0, end - time.monotonic())))
        for server in self._servers:
            server.drop_connections()
        self._beats_stop.set()
        if self._beats is not None:
            # A beat answered 404 after the DELETE would register us again.
            self._beats.join(5)
        if self._http is not None and self._client_id is not None:
            # If this fails the registry drops us anyway once the beats stop.
            with contextlib.suppress(httpx.HTTPError):
                self._http.delete(self._nacos(f"/clients/{self._client_id}"))
        if self._http is not None:
            self._http.close()
        self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m agent.lab.demo_app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--management-port", type=int)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--latency-tail", type=float, default=0.0)
    p.add_argument("--tail-ms", type=float, default=1000.0)
    p.add_argument("--nacos-addr")
    p.add_argument("--service", default="demo")
    p.add_argument("--ip", default="127.0.0.1")
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--group", default="DEFAULT_GROUP")
    p.add_argument("--namespace", default="public")
    p.add_argument("--shutdown-timeout", type=float, default=30.0)
    p.add_argument("--ignore-shutdown", action="store_true")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--seed", type=int)
    args = p.parse_args(argv)
    app = DemoApp(AppConfig(**vars(args)))
    try:
        app.start()
    except (OSError, httpx.HTTPError, ValueError, KeyError) as exc:
        print(f"DEMO_APP_FAILED {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM and app.config.ignore_sigterm:
            return
        # Off the main thread: shutdown() blocks while requests drain.
        threading.Thread(target=app.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    separate = args.management_port is not None
    management = f" management_port={app.management_port}" if separate else ""
    print(f"DEMO_APP_READY port={app.port}{management}", flush=True)
    while not app.wait(0.5):
        pass
    print("DEMO_APP_STOPPED", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
