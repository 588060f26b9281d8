"""The sidecar against real loopback servers: token, single flight, readiness, repair.

The warm-up runs on fakes in tests/sidecar/test_warmup.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent import config, wiring
from agent.sidecar import Sidecar, make_server
from prestop_lab import procs
from prestop_lab.demo_app import AppConfig, DemoApp
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator

TOKEN = "s3cret-token"


@pytest.fixture(name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    # The tests' own registrations never beat: a starved machine must not see them expire.
    with NacosEmulator(EmulatorConfig(push_delay=0.05, client_timeout=3600.0)) as nacos:
        yield nacos


def pushed(nacos: NacosEmulator, port: int) -> bool:
    """The served list (what reads see, after the push delay) holds 127.0.0.1:port."""
    _, hosts = nacos.store.served(("public", "DEFAULT_GROUP@@demo"))
    return any(h["port"] == port for h in hosts)


@pytest.fixture(name="app")
def fixture_app() -> Iterator[DemoApp]:
    app = DemoApp(AppConfig(port=0, latency_ms=1))
    app.start()
    yield app
    app.shutdown()


def env(nacos: NacosEmulator, port: int, **extra: str) -> dict[str, str]:
    return {
        "PRESTOP_NACOS_ADDR": nacos.addr,
        "PRESTOP_SERVICE": "demo",
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_BUDGET": "10",
        "PRESTOP_MIN_WAIT": "0.2",
        "PRESTOP_QUIET_WINDOW": "0.5",
        "PRESTOP_TOKEN": TOKEN,
        "PRESTOP_LOG_TO_PID1": "false",
        **extra,
    }


def build(nacos: NacosEmulator, port: int, **extra: str) -> Sidecar:
    e = env(nacos, port, **extra)
    cfg = config.load({}, e)
    return wiring.build_sidecar(cfg, config.load_sidecar({}, e, cfg))


@pytest.fixture(name="served")
def fixture_served(nacos: NacosEmulator, app: DemoApp) -> Iterator[tuple[Sidecar, str]]:
    nacos.register("demo", "127.0.0.1", app.port)
    assert procs.wait_for(lambda: pushed(nacos, app.port), 30)
    sidecar = build(nacos, app.port)
    server = make_server(sidecar, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield sidecar, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    sidecar.close()


def test_token_is_required(served: tuple[Sidecar, str], nacos: NacosEmulator) -> None:
    """/prestop without the token, or with a wrong one, is refused and changes nothing."""
    _, url = served
    assert httpx.get(f"{url}/prestop").status_code == 403
    assert httpx.get(f"{url}/prestop", headers={"X-Prestop-Token": "nope"}).status_code == 403
    assert nacos.writes() == []
    assert httpx.get(f"{url}/healthz").json() == {"status": "alive"}


def test_concurrent_calls_run_one_sequence(
    served: tuple[Sidecar, str], nacos: NacosEmulator, app: DemoApp
) -> None:
    """Two concurrent /prestop calls (hooks come at least once) share one run and its outcome."""
    _, url = served
    answers: list[dict[str, Any]] = []

    def call() -> None:
        r = httpx.get(f"{url}/prestop", headers={"X-Prestop-Token": TOKEN}, timeout=20)
        assert r.status_code == 200
        answers.append(r.json())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert len(answers) == 2
    assert sorted(a["joined"] for a in answers) == [False, True]
    assert answers[0]["phases"] == answers[1]["phases"]
    assert sum(1 for w in nacos.writes() if w.method == "PATCH") == 1
    assert app.wait(30)
    again = httpx.get(f"{url}/prestop", headers={"X-Prestop-Token": TOKEN}).json()
    assert again["joined"] is True
    assert "prestop_last_outcome" in httpx.get(f"{url}/metrics").text


def test_readyz_follows_the_registry(nacos: NacosEmulator, app: DemoApp) -> None:
    """Not ready until registered and enabled; ready after; not ready once draining."""
    sidecar = build(nacos, app.port)
    sidecar.ready.cache = 0
    try:
        assert sidecar.readiness() == (False, ["not_visible_to_consumers"])
        nacos.register("demo", "127.0.0.1", app.port)
        assert procs.wait_for(lambda: sidecar.readiness() == (True, []), 30)
        ids: dict[str, str | int] = {"serviceName": "demo", "ip": "127.0.0.1", "port": app.port}
        httpx.patch(f"{nacos.url}/nacos/v1/ns/instance", params={**ids, "enabled": "false"})
        disabled = (False, ["not_visible_to_consumers"])
        assert procs.wait_for(lambda: sidecar.readiness() == disabled, 30)
        httpx.patch(f"{nacos.url}/nacos/v1/ns/instance", params={**ids, "enabled": "true"})
        assert procs.wait_for(lambda: sidecar.readiness() == (True, []), 30)
        sidecar.state.draining.set()
        assert sidecar.readiness() == (False, ["draining"])
    finally:
        sidecar.close()


def test_stale_disabled_is_repaired(nacos: NacosEmulator, app: DemoApp) -> None:
    """A new pod that finds its IP:port disabled by the old pod's ops record re-enables it."""
    old = nacos.register("demo", "127.0.0.1", app.port, weight=2.0)
    httpx.patch(
        f"{nacos.url}/nacos/v1/ns/instance",
        params={
            "serviceName": "demo",
            "ip": "127.0.0.1",
            "port": app.port,
            "enabled": "false",
            "weight": "2",
        },
    )
    nacos.deregister(old)  # the old pod is gone; its record lingers
    nacos.register("demo", "127.0.0.1", app.port, weight=2.0)  # the new pod, same IP:port
    assert procs.wait_for(lambda: pushed(nacos, app.port), 30)
    assert nacos.admin_view("demo")[0]["enabled"] is False
    sidecar = build(nacos, app.port)
    # A bound, not a window: start-up returns once it sees the registration. 5 s once ran out
    # on two busy cores before the repair.
    sidecar.start_up(app_start_timeout=30)
    sidecar.close()
    assert sidecar.state.repaired
    (inst,) = nacos.admin_view("demo")
    assert (inst["enabled"], inst["weight"]) == (True, 2.0)


@pytest.mark.slow
def test_sigterm_during_a_drain_does_not_cut_it_short(nacos: NacosEmulator) -> None:
    """A real `prestop serve`: SIGTERM arrives during the drain; the run still completes."""
    app_port, side_port = procs.free_port(), procs.free_port()
    app = procs.start(
        "app",
        procs.python_module(
            "prestop_lab.demo_app",
            "--port",
            str(app_port),
            "--nacos-addr",
            nacos.addr,
            "--service",
            "demo",
        ),
        ready_marker="DEMO_APP_READY",
    )
    app.wait_ready(20)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRESTOP_")}
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve", "--listen", f"127.0.0.1:{side_port}"],
        env={
            **base,
            # A 2 s minimum drain needs a budget of at least 10.75 s (check_drain_budget).
            **env(nacos, app_port, PRESTOP_MIN_WAIT="2", PRESTOP_BUDGET="12"),
            "PRESTOP_LOG_FORMAT": "json",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert procs.wait_for(lambda: _up(f"http://127.0.0.1:{side_port}/healthz"), 60)
        answer: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: answer.append(
                httpx.get(
                    f"http://127.0.0.1:{side_port}/prestop",
                    headers={"X-Prestop-Token": TOKEN},
                    timeout=60,
                )
            )
        )
        call.start()
        # The take-out is written: the run is under way, and its 2 s drain is still ahead.
        assert procs.wait_for(lambda: any(w.method == "PATCH" for w in nacos.writes()), 30)
        sidecar.send_signal(signal.SIGTERM)  # kubelet signals every container at once
        call.join()
        assert answer[0].status_code == 200
        body = answer[0].json()
        assert body["phases"]["drain"]["duration_s"] >= 1.5
        assert body["phases"]["shutdown"]["app_stopped"] is True
        assert sidecar.wait(30) == 0
        assert sidecar.stderr is not None
        events = [
            json.loads(x)["event"] for x in sidecar.stderr.read().splitlines() if x.startswith("{")
        ]
        assert events.index("sidecar_terminating") < events.index("prestop_summary")
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
        sidecar.wait(5)
        if sidecar.stderr:
            sidecar.stderr.close()
        app.kill()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


# --- the sidecar with Eureka ---


def test_eureka_sidecar_repairs_a_predecessors_override_and_drains() -> None:
    """A new pod inherits the old pod's OUT_OF_SERVICE override (same instance id): the sidecar
    removes it at start-up, /readyz turns true once consumers can fetch it UP, and /prestop
    takes it out, stops the app and cancels the lease."""
    from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

    with EurekaEmulator(EurekaConfig(cache_update_interval=0.3)) as eureka:
        app = DemoApp(AppConfig(port=procs.free_port(), latency_ms=1))
        instance_id = f"pod-{app.config.port}:demo:{app.config.port}"
        # The predecessor: same id, taken out, never cancelled (killed at the grace period).
        eureka.register("DEMO", instance_id, "127.0.0.1", app.config.port, hostname="old")
        httpx.put(f"{eureka.url}apps/DEMO/{instance_id}/status", params={"value": "OUT_OF_SERVICE"})
        app.config.eureka_url, app.config.eureka_renewal = eureka.url, 0.5
        app.start()
        e = {
            "PRESTOP_EUREKA_URL": eureka.url,
            "PRESTOP_SERVICE": "demo",
            "PRESTOP_IP": "127.0.0.1",
            "PRESTOP_PORT": str(app.port),
            "PRESTOP_BUDGET": "10",
            "PRESTOP_MIN_WAIT": "0.2",
            "PRESTOP_QUIET_WINDOW": "0.5",
            "PRESTOP_CONFIRM_TIMEOUT": "3",
            "PRESTOP_TOKEN": TOKEN,
            "PRESTOP_LOG_TO_PID1": "false",
        }
        cfg = config.load({}, e)
        sidecar = wiring.build_sidecar(cfg, config.load_sidecar({}, e, cfg))
        try:
            stored = eureka.instance("DEMO", instance_id)
            assert stored is not None and stored["status"] == "OUT_OF_SERVICE"
            assert sidecar.readiness()[0] is False
            sidecar.start_up(app_start_timeout=30)
            assert sidecar.state.repaired
            assert eureka.override(instance_id) is None
            sidecar.ready.cache = 0
            assert procs.wait_for(lambda: sidecar.readiness()[0], 30), sidecar.readiness()
            outcome, error = sidecar.flight.run()
            assert error is None and outcome is not None
            assert outcome.exit_code == 0, outcome.summary()
            deregister = outcome.phase("deregister")
            assert deregister is not None and deregister.outcome == "ok"
            assert app.wait(30)
            assert eureka.instance("DEMO", instance_id) is None
        finally:
            sidecar.close()
            app.shutdown()
