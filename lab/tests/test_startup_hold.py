"""The sidecar's start-up hold (delayed exposure) and its hold record, with real processes.

A new instance is taken out as soon as it registers and put back once the app is ready; an
operator's ``prestop down`` is never undone, by the hold or by a restarted sidecar; a sidecar
killed with SIGKILL during its hold leaves the instance out, and the next sidecar start (what
Kubernetes does when a container dies) finishes the hold from the record on the emptyDir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import config, wiring
from agent.holdstate import FILE_NAME, HoldFile
from agent.sidecar import Sidecar
from prestop_lab import procs
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator
from prestop_lab.push_delay import admin_instance, start_sdk_app
from prestop_lab.real import NACOS_USER, SERVICE, NacosServer

TOKEN = "hold-test-token"
WEIGHT = 3.0
METADATA = {"zone": "lab-a", "version": "7"}


class ReadyApp:
    """The app's health and readiness URLs: 200 once ``ready`` is set, 503 before."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        ready = self.ready

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 200 if ready.is_set() else 503
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    # The instances are registered by the test, which sends no gRPC keep-alive.
    with NacosEmulator(EmulatorConfig(push_delay=0.05, client_timeout=3600.0)) as nacos:
        yield nacos


@pytest.fixture(name="ready_app")
def fixture_ready_app() -> Iterator[ReadyApp]:
    app = ReadyApp()
    yield app
    app.close()


def hold_env(addr: str, port: int, app: ReadyApp, state_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PRESTOP_NACOS_ADDR": addr,
        "PRESTOP_SERVICE": "demo",
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_BUDGET": "11",
        "PRESTOP_TOKEN": TOKEN,
        "PRESTOP_LOG_TO_PID1": "false",
        "PRESTOP_LOG_FORMAT": "json",
        "PRESTOP_HEALTH_URL": f"{app.url}/health",
        "PRESTOP_READY_URL": f"{app.url}/ready",
        "PRESTOP_STATE_DIR": str(state_dir),
        "HOSTNAME": "pod-a",
        **extra,
    }


def build(e: dict[str, str]) -> Sidecar:
    cfg = config.load({}, e)
    return wiring.build_sidecar(cfg, config.load_sidecar({}, e, cfg))


def start_serve(e: dict[str, str]) -> procs.Proc:
    """A real `prestop serve` process (stdout and stderr collected)."""
    port = procs.free_port()
    proc = procs.start(
        f"serve-{port}",
        procs.prestop_argv("serve", "--listen", f"127.0.0.1:{port}"),
        env=e,
        ready_marker="sidecar_listening",
    )
    proc.wait_ready(20)
    return proc


def events(proc: procs.Proc) -> list[str]:
    out = []
    for line in list(proc.lines):
        if line.startswith("{"):
            out.append(str(json.loads(line).get("event")))
    return out


def has_event(proc: procs.Proc, name: str) -> bool:
    return name in events(proc)


def prestop_cli(command: str, e: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", command],
        env={**os.environ, **e},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def enabled_in(nacos: NacosEmulator, port: int) -> bool | None:
    for inst in nacos.admin_view("demo"):
        if inst["port"] == port:
            return bool(inst["enabled"])
    return None


def visible(nacos: NacosEmulator, port: int) -> bool:
    return any(h["port"] == port for h in nacos.consumer_view("demo"))


def holder(state_dir: Path) -> str | None:
    path = state_dir / FILE_NAME
    if not path.exists():
        return None
    return str(json.loads(path.read_text())["holder"])


def test_hold_keeps_the_instance_out_until_ready_then_puts_it_back(
    nacos: NacosEmulator, ready_app: ReadyApp, tmp_path: Path
) -> None:
    """Out from registration (weight and metadata kept), /readyz false; in once ready."""
    port = procs.free_port()
    sidecar = build(hold_env(nacos.addr, port, ready_app, tmp_path, PRESTOP_STARTUP_DELAY="0.2"))
    sidecar.ready.cache = 0
    nacos.register("demo", "127.0.0.1", port, weight=WEIGHT, metadata=METADATA)
    runner = threading.Thread(target=sidecar.start_up, kwargs={"app_start_timeout": 30})
    runner.start()
    try:
        assert procs.wait_for(lambda: enabled_in(nacos, port) is False, 30)
        assert holder(tmp_path) == "startup"
        assert procs.wait_for(lambda: not visible(nacos, port), 30)
        ready, reasons = sidecar.readiness()
        assert not ready and "startup_hold" in reasons
        (inst,) = nacos.admin_view("demo")
        assert (inst["weight"], inst["metadata"]) == (WEIGHT, METADATA)
        ready_app.ready.set()
        runner.join(20)
        assert not runner.is_alive()
        assert enabled_in(nacos, port) is True
        assert procs.wait_for(lambda: visible(nacos, port), 30)
        assert holder(tmp_path) is None
        assert sidecar.state.hold_seconds is not None
        (inst,) = nacos.admin_view("demo")
        assert (inst["weight"], inst["metadata"]) == (WEIGHT, METADATA)
    finally:
        sidecar.state.stop.set()
        runner.join(5)
        sidecar.close()


@pytest.mark.slow
def test_sigkill_during_the_hold_then_restart_puts_it_back(
    nacos: NacosEmulator, ready_app: ReadyApp, tmp_path: Path
) -> None:
    """A sidecar killed outright mid-hold leaves the instance out; the restarted one reads its
    predecessor's record and finishes the hold instead of leaving the instance out forever."""
    port = procs.free_port()
    e = hold_env(nacos.addr, port, ready_app, tmp_path)
    nacos.register("demo", "127.0.0.1", port, weight=WEIGHT, metadata=METADATA)
    first = start_serve(e)
    try:
        assert procs.wait_for(lambda: has_event(first, "startup_hold_started"), 30), "\n".join(
            first.lines
        )
        assert enabled_in(nacos, port) is False
        first.popen.kill()  # SIGKILL: no clean-up of any kind
        first.wait(5)
    finally:
        first.kill()
    assert enabled_in(nacos, port) is False
    assert holder(tmp_path) == "startup"
    ready_app.ready.set()
    second = start_serve(e)
    try:
        assert procs.wait_for(lambda: has_event(second, "startup_hold_released"), 30), second.lines
        assert "hold_state_inherited" in events(second)
        assert enabled_in(nacos, port) is True
        assert holder(tmp_path) is None
        (inst,) = nacos.admin_view("demo")
        assert (inst["weight"], inst["metadata"]) == (WEIGHT, METADATA)
    finally:
        second.kill()


@pytest.mark.slow
def test_operator_down_wins_over_the_hold_and_a_restart(
    nacos: NacosEmulator, ready_app: ReadyApp, tmp_path: Path
) -> None:
    """`prestop down` during the hold: the hold yields and does not put the instance back, a
    restarted sidecar keeps it out; `prestop up` puts it back and clears the record."""
    port = procs.free_port()
    e = hold_env(nacos.addr, port, ready_app, tmp_path)
    nacos.register("demo", "127.0.0.1", port)
    first = start_serve(e)
    try:
        assert procs.wait_for(lambda: has_event(first, "startup_hold_started"), 30), "\n".join(
            first.lines
        )
        down = prestop_cli("down", e)
        assert down.returncode == 0, down.stderr
        assert holder(tmp_path) == "operator"
        ready_app.ready.set()
        assert procs.wait_for(lambda: has_event(first, "startup_hold_yielded"), 30), first.lines
        assert enabled_in(nacos, port) is False
    finally:
        first.kill()
    second = start_serve(e)
    try:
        assert procs.wait_for(lambda: has_event(second, "operator_hold_kept"), 30), "\n".join(
            second.lines
        )
        assert enabled_in(nacos, port) is False
        assert "stale_disabled_repaired" not in events(second)
    finally:
        second.kill()
    up = prestop_cli("up", e)
    assert up.returncode == 0, up.stderr
    assert enabled_in(nacos, port) is True
    assert holder(tmp_path) is None


def test_a_restart_keeps_this_pods_drain_and_repairs_an_earlier_pods(
    nacos: NacosEmulator, ready_app: ReadyApp, tmp_path: Path
) -> None:
    """No hold: a record of this pod's drain keeps the instance out (the pod is going away); a
    record of another pod's drain on the same ip:port is a leftover and is repaired."""
    port = procs.free_port()
    e = hold_env(nacos.addr, port, ready_app, tmp_path)
    del e["PRESTOP_READY_URL"]  # no hold: only the repair decides
    ready_app.ready.set()
    nacos.register("demo", "127.0.0.1", port)
    httpx.patch(
        f"{nacos.url}/nacos/v1/ns/instance",
        params={"serviceName": "demo", "ip": "127.0.0.1", "port": port, "enabled": "false"},
    )
    HoldFile(tmp_path, f"127.0.0.1:{port}").write("drain", "prestop hook")  # this pod's
    same_pod = build(e)
    same_pod.start_up(app_start_timeout=30)
    same_pod.close()
    assert not same_pod.state.repaired
    assert enabled_in(nacos, port) is False

    HoldFile(tmp_path, f"127.0.0.1:{port}", pod="pod-old").write("drain", "prestop hook")
    new_pod = build(e)
    new_pod.start_up(app_start_timeout=30)
    new_pod.close()
    assert new_pod.state.repaired
    assert enabled_in(nacos, port) is True
    assert holder(tmp_path) is None


def test_eureka_hold_uses_an_out_of_service_override(ready_app: ReadyApp, tmp_path: Path) -> None:
    """Eureka: OUT_OF_SERVICE override while held; removed (UP) once ready."""
    from prestop_lab.demo_app import AppConfig, DemoApp
    from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

    with EurekaEmulator(EurekaConfig(cache_update_interval=0.3)) as eureka:
        app = DemoApp(AppConfig(port=procs.free_port(), latency_ms=1))
        instance_id = f"pod-{app.config.port}:demo:{app.config.port}"
        app.config.eureka_url, app.config.eureka_renewal = eureka.url, 0.5
        e = {
            "PRESTOP_EUREKA_URL": eureka.url,
            "PRESTOP_SERVICE": "demo",
            "PRESTOP_IP": "127.0.0.1",
            "PRESTOP_PORT": str(app.config.port),
            "PRESTOP_BUDGET": "11",
            "PRESTOP_TOKEN": TOKEN,
            "PRESTOP_LOG_TO_PID1": "false",
            "PRESTOP_READY_URL": f"{ready_app.url}/ready",
            "PRESTOP_STATE_DIR": str(tmp_path),
        }
        sidecar = build(e)
        runner = threading.Thread(target=sidecar.start_up, kwargs={"app_start_timeout": 30})
        runner.start()
        app.start()
        try:
            assert procs.wait_for(lambda: eureka.override(instance_id) == "OUT_OF_SERVICE", 30)
            assert holder(tmp_path) == "startup"
            ready_app.ready.set()
            runner.join(20)
            assert not runner.is_alive()
            assert eureka.override(instance_id) is None
            stored = eureka.instance("DEMO", instance_id)
            assert stored is not None and stored["status"] == "UP"
        finally:
            sidecar.state.stop.set()
            runner.join(5)
            sidecar.close()
            app.shutdown()


# --- a real Nacos: the hold on an instance registered over gRPC by the official SDK ---


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_real_nacos_hold_survives_sigkill_and_respects_down(
    real_nacos2: NacosServer, ready_app: ReadyApp, tmp_path: Path
) -> None:
    server = real_nacos2
    port = procs.free_port()
    e = {
        **hold_env(server.addr, port, ready_app, tmp_path),
        "PRESTOP_SERVICE": SERVICE,
        "PRESTOP_USERNAME": NACOS_USER,
        "PRESTOP_PASSWORD": server.password,
    }
    first = start_serve(e)  # the pod's containers start together: the sidecar is waiting
    app = start_sdk_app(server, port, WEIGHT, METADATA)

    def enabled() -> bool | None:
        inst = admin_instance(server, port)
        return None if inst is None else bool(inst.get("enabled"))

    def seen_by_consumers() -> bool:
        return any(h.get("port") == port for h in server.consumer_view())

    try:
        assert procs.wait_for(lambda: has_event(first, "startup_hold_started"), 60, 0.2), (
            first.lines[-20:]
        )
        assert procs.wait_for(lambda: enabled() is False, 15, 0.2)
        assert not seen_by_consumers()
        first.popen.kill()
        first.wait(5)
        inst = admin_instance(server, port)
        assert inst is not None and inst["enabled"] is False
        assert (inst["weight"], inst["metadata"]) == (WEIGHT, METADATA)

        ready_app.ready.set()
        second = start_serve(e)
        try:
            assert procs.wait_for(lambda: has_event(second, "startup_hold_released"), 30), (
                second.lines[-20:]
            )
            assert procs.wait_for(lambda: enabled() is True, 15, 0.2)
            assert procs.wait_for(seen_by_consumers, 15, 0.2)
            inst = admin_instance(server, port)
            assert inst is not None
            assert (inst["weight"], inst["metadata"]) == (WEIGHT, METADATA)
        finally:
            second.kill()

        down = prestop_cli("down", e)
        assert down.returncode == 0, down.stderr
        assert procs.wait_for(lambda: enabled() is False, 15, 0.2)
        third = start_serve(e)
        try:
            assert procs.wait_for(lambda: has_event(third, "operator_hold_kept"), 30), third.lines[
                -20:
            ]
            assert enabled() is False
        finally:
            third.kill()
        up = prestop_cli("up", e)
        assert up.returncode == 0, up.stderr
        assert procs.wait_for(lambda: enabled() is True, 15, 0.2)
        assert holder(tmp_path) is None
    finally:
        first.kill()
        app.popen.terminate()
        if app.wait(15) is None:
            app.kill()
