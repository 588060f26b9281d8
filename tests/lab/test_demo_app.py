"""The demo app: Spring-like metrics, graceful shutdown, registration through the lab API.

The registry is ``FakeNacos`` below, a few endpoints of the emulator's lab and consumer APIs, so
these tests do not depend on the emulator (``test_consumer.py`` uses it too).
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from agent.drain.signals import Metric, parse_prometheus
from agent.lab import procs
from agent.lab.demo_app import AppConfig, DemoApp
from agent.lab.procs import wait_for


class FakeNacos:
    """The lab API (clients, beats, watch), the v1/v3 instance lists, and misbehaving
    endpoints ``/boom`` (503), ``/drop`` (closes without answering), ``/slow`` (1 s)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.instances: dict[str, dict[str, Any]] = {}  # clientId or manual key -> instance
        self.revision = 0
        self.calls: list[tuple[float, str, str]] = []  # (monotonic, method, path)
        self.fail_lists = False
        self._ids = iter(range(1, 1_000_000))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                with fake.cond:
                    fake.calls.append((time.monotonic(), self.command, parts.path))
                status, answer = fake.route(
                    self.command, parts.path, dict(parse_qsl(parts.query)), body
                )
                if status == 0:
                    self.close_connection = True
                    return
                self._answer(status, answer)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.addr}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeNacos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, service: str, ip: str, port: int, **extra: Any) -> str:
        with self.cond:
            key = f"manual-{next(self._ids)}"
            self.instances[key] = {"service": service, "ip": ip, "port": port, **extra}
            self.revision += 1
            self.cond.notify_all()
            return key

    def remove(self, key: str) -> None:
        with self.cond:
            self.instances.pop(key, None)
            self.revision += 1
            self.cond.notify_all()

    def hosts(self, service: str) -> list[dict[str, Any]]:
        with self.cond:
            found = [dict(i) for i in self.instances.values() if i["service"] == service]
        return [
            {
                "ip": i["ip"],
                "port": i["port"],
                "weight": i.get("weight", 1.0),
                "healthy": i.get("healthy", True),
                "enabled": i.get("enabled", True),
                "metadata": i.get("metadata", {}),
            }
            for i in found
            if i.get("enabled", True)
        ]

    def registered(self, service: str) -> list[dict[str, Any]]:
        with self.cond:
            return [
                dict(v)
                for k, v in self.instances.items()
                if not k.startswith("manual-") and v["service"] == service
            ]

    def calls_to(self, method: str, prefix: str) -> list[float]:
        with self.cond:
            return [t for t, m, p in self.calls if m == method and p.startswith(prefix)]

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/boom":
            return 503, {"status": 503}
        if path == "/drop":
            return 0, None
        if path == "/slow":
            time.sleep(1.0)
            return 200, {}
        if method == "POST" and path == "/nacos/lab/v1/clients":
            with self.cond:
                cid = f"client-{next(self._ids)}"
                self.instances[cid] = dict(body)
                self.revision += 1
                self.cond.notify_all()
            return 200, {"clientId": cid}
        if path.startswith("/nacos/lab/v1/clients/"):
            cid = path.split("/")[5]
            with self.cond:
                if cid not in self.instances:
                    return 404, {"error": "unknown client"}
                if method == "DELETE":
                    del self.instances[cid]
                    self.revision += 1
                    self.cond.notify_all()
            return 200, {}
        service = query.get("serviceName", "")
        if self.fail_lists:
            return 500, {"status": 500, "error": "Internal Server Error"}
        if path == "/nacos/v1/ns/instance/list":
            return 200, {"name": f"DEFAULT_GROUP@@{service}", "hosts": self.hosts(service)}
        if path == "/nacos/v3/client/ns/instance/list":
            return 200, {"code": 0, "message": "success", "data": self.hosts(service)}
        if path == "/nacos/lab/v1/watch":
            seen, end = int(query.get("revision", 0)), time.monotonic() + float(query["timeout"])
            with self.cond:
                while self.revision <= seen and time.monotonic() < end:
                    self.cond.wait(max(0.0, end - time.monotonic()))
                revision = self.revision
            return 200, {"name": service, "hosts": self.hosts(service), "revision": revision}
        return 404, {"status": 404}


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[FakeNacos]:
    with FakeNacos() as nacos:
        yield nacos


@pytest.fixture(name="app")
def fixture_app() -> Iterator[DemoApp]:
    app = DemoApp(AppConfig(port=0, latency_ms=1))
    app.start()
    yield app
    app.shutdown()


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    return False


def samples(text: str, name: str) -> list[Metric]:
    return [m for m in parse_prometheus(text) if m.name == name]


def in_background(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def start_process(*args: str) -> procs.Proc:
    proc = procs.start(
        "demo-app",
        procs.python_module("agent.lab.demo_app", "--port", "0", "--latency-ms", "1", *args),
        ready_marker="DEMO_APP_READY",
    )
    proc.wait_ready(10)
    return proc


def port_of(proc: procs.Proc) -> int:
    line = next(line for line in proc.lines if line.startswith("DEMO_APP_READY"))
    return int(line.split("port=")[1].split()[0])


def test_prometheus_text_counts_work_requests(app: DemoApp) -> None:
    """/actuator/prometheus has Micrometer's series, counting /work and the scrapes themselves."""
    base = f"http://127.0.0.1:{app.port}"
    with httpx.Client() as http:
        for _ in range(3):
            assert http.get(f"{base}/work").json()["instance"] == f"127.0.0.1:{app.port}"
        http.get(f"{base}/actuator/prometheus")
        response = http.get(f"{base}/actuator/prometheus")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE http_server_requests_seconds summary" in text
    counts = {m.labels["uri"]: m for m in samples(text, "http_server_requests_seconds_count")}
    work = counts["/work"]
    assert work.value == 3
    assert work.labels == {
        "error": "none",
        "exception": "none",
        "method": "GET",
        "outcome": "SUCCESS",
        "status": "200",
        "uri": "/work",
    }
    assert counts["/actuator/prometheus"].value == 1  # the earlier scrape
    sums = {m.labels["uri"]: m.value for m in samples(text, "http_server_requests_seconds_sum")}
    maxes = {m.labels["uri"]: m.value for m in samples(text, "http_server_requests_seconds_max")}
    assert 0 < maxes["/work"] <= sums["/work"]
    assert [m.labels for m in samples(text, "tomcat_threads_busy_threads")] == [
        {"name": f"http-nio-{app.port}"}
    ]


def test_active_count_includes_in_flight_requests_and_the_scrape(app: DemoApp) -> None:
    """A slow request in flight shows in the active count and busy threads, plus the scrape."""
    base = f"http://127.0.0.1:{app.port}"
    slow, _ = in_background(lambda: httpx.get(f"{base}/work?ms=800"))
    assert wait_for(lambda: app.metrics.active == 1, 2)
    time.sleep(0.1)
    text = httpx.get(f"{base}/actuator/prometheus").text
    (active,) = samples(text, "http_server_requests_active_seconds_active_count")
    assert active.value == 2
    assert active.labels["uri"] == "UNKNOWN"
    (duration,) = samples(text, "http_server_requests_active_seconds_duration_sum")
    assert duration.value >= 0.1
    assert samples(text, "tomcat_threads_busy_threads")[0].value == 2
    assert samples(text, "tomcat_connections_current_connections")[0].value == 2
    slow.join()


def test_actuator_metrics_json_filters_by_tag(app: DemoApp) -> None:
    """/actuator/metrics/http.server.requests reports COUNT per ?tag=, 404 when nothing matches."""
    base = f"http://127.0.0.1:{app.port}/actuator/metrics"
    with httpx.Client() as http:
        assert http.get(f"{base}/http.server.requests").status_code == 404  # no meter yet
        for _ in range(4):
            http.get(f"http://127.0.0.1:{app.port}/work")
        http.get(f"http://127.0.0.1:{app.port}/actuator/health")
        overview = http.get(f"{base}/http.server.requests").json()
        work = http.get(f"{base}/http.server.requests", params={"tag": "uri:/work"}).json()
        both = http.get(f"{base}/http.server.requests?tag=uri:/work&tag=status:200").json()
        missing = http.get(f"{base}/http.server.requests", params={"tag": "uri:/nope"})
        active = http.get(f"{base}/http.server.requests.active").json()
    stats = {m["statistic"]: m["value"] for m in overview["measurements"]}
    assert stats["COUNT"] == 6  # the first, unanswered metrics request counts too
    assert overview["baseUnit"] == "seconds"
    tags = {t["tag"]: t["values"] for t in overview["availableTags"]}
    assert tags["uri"] == ["/actuator/health", "/actuator/metrics/{requiredMetricName}", "/work"]
    assert {m["statistic"]: m["value"] for m in work["measurements"]}["COUNT"] == 4
    assert "uri" not in {t["tag"] for t in work["availableTags"]}
    assert both["measurements"][0]["value"] == 4
    assert missing.status_code == 404
    assert active["measurements"][0] == {"statistic": "ACTIVE_TASKS", "value": 1.0}


def test_idle_keep_alive_request_after_shutdown_is_not_served(app: DemoApp) -> None:
    """Once stopping, a request on an idle kept-alive connection is closed unanswered."""
    idle = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    idle.request("GET", "/work")
    assert idle.getresponse().read()
    busy = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    busy.request("GET", "/work?ms=1000")  # keeps the app draining for a while
    time.sleep(0.1)
    threading.Thread(target=app.shutdown, daemon=True).start()
    assert wait_for(lambda: refuses(app.port), 1)
    idle.request("GET", "/work")
    with pytest.raises(http.client.RemoteDisconnected):
        idle.getresponse()
    response = busy.getresponse()
    assert response.status == 200
    assert response.getheader("Connection") == "close"
    assert app.wait(3)


def test_ignore_shutdown_keeps_serving() -> None:
    """With ignore_shutdown the endpoint answers 200 but the app keeps serving."""
    app = DemoApp(AppConfig(port=0, latency_ms=1, ignore_shutdown=True))
    app.start()
    try:
        base = f"http://127.0.0.1:{app.port}"
        response = httpx.post(f"{base}/actuator/shutdown")
        assert response.json() == {"message": "Shutting down, bye..."}
        time.sleep(0.8)
        assert httpx.get(f"{base}/work").status_code == 200
        assert httpx.get(f"{base}/actuator/health").json() == {"status": "UP"}
    finally:
        app.shutdown()
    assert app.wait(2)


def test_management_port_serves_actuator_only() -> None:
    """With a management port, actuator lives there and the main port serves business only."""
    app = DemoApp(AppConfig(port=0, management_port=0, latency_ms=1))
    app.start()
    try:
        assert app.management_port != app.port
        main, mgmt = f"http://127.0.0.1:{app.port}", f"http://127.0.0.1:{app.management_port}"
        assert httpx.get(f"{main}/work").status_code == 200
        assert httpx.get(f"{main}/actuator/health").status_code == 404
        assert httpx.get(f"{mgmt}/work").status_code == 404
        text = httpx.get(f"{mgmt}/actuator/prometheus").text
        assert 'uri="/work"' in text
        assert f'name="http-nio-{app.port}"' in text
    finally:
        app.shutdown()


def test_registers_and_registers_again_when_forgotten(nacos: FakeNacos) -> None:
    """The app registers with Spring Cloud metadata, and again if the registry forgets it."""
    app = DemoApp(AppConfig(port=0, nacos_addr=nacos.addr, service="svc", weight=2.0))
    app.start()
    try:
        (registered,) = nacos.registered("svc")
        assert registered["port"] == app.port
        assert registered["weight"] == 2.0
        assert registered["metadata"] == {"preserved.register.source": "SPRING_CLOUD"}
        first = app.client_id
        assert first is not None
        nacos.remove(first)
        assert wait_for(lambda: app.client_id != first, 3)
        assert len(nacos.registered("svc")) == 1
    finally:
        app.shutdown()
    assert nacos.registered("svc") == []


def test_actuator_shutdown_process(nacos: FakeNacos) -> None:
    """POST /actuator/shutdown: port refuses within ~1 s, in-flight finishes, DELETE, exit 0."""
    proc = start_process("--nacos-addr", nacos.addr, "--service", "svc")
    try:
        port = port_of(proc)
        assert len(nacos.registered("svc")) == 1
        base = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        slow, result = in_background(lambda: httpx.get(f"{base}/work?ms=1500").status_code)
        time.sleep(0.1)
        assert httpx.post(f"{base}/actuator/shutdown").status_code == 200
        posted = time.monotonic()
        assert wait_for(lambda: refuses(port), 2, interval=0.02)
        assert time.monotonic() - posted < 1.2
        slow.join(5)
        assert result == [200]
        assert proc.wait(5) == 0
        assert "DEMO_APP_STOPPED" in proc.lines
        (deleted,) = nacos.calls_to("DELETE", "/nacos/lab/v1/clients/")
        assert deleted >= t0 + 1.4  # only once the in-flight request had finished
        assert nacos.registered("svc") == []
    finally:
        proc.kill()


def test_sigterm_is_graceful_in_a_process(nacos: FakeNacos) -> None:
    """SIGTERM refuses new connections at once, finishes in-flight work, deregisters, exits 0."""
    proc = start_process("--nacos-addr", nacos.addr, "--service", "svc")
    try:
        port = port_of(proc)
        slow, result = in_background(
            lambda: httpx.get(f"http://127.0.0.1:{port}/work?ms=1000").status_code
        )
        time.sleep(0.2)
        proc.popen.send_signal(signal.SIGTERM)
        assert wait_for(lambda: refuses(port), 0.5, interval=0.02)
        slow.join(5)
        assert result == [200]
        assert proc.wait(5) == 0
        assert proc.lines[-1] == "DEMO_APP_STOPPED"
        assert nacos.registered("svc") == []
    finally:
        proc.kill()


def test_ignore_sigterm_leaves_sigint() -> None:
    """With --ignore-sigterm the process keeps serving after SIGTERM; SIGINT still stops it."""
    proc = start_process("--ignore-sigterm")
    try:
        port = port_of(proc)
        proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/work").status_code == 200
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
