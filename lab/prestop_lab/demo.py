"""``prestop lab``: the whole preStop sequence on loopback, with real processes.

A Nacos emulator, two demo app instances registered in it, and a consumer load-balancing over
what Nacos says; then ``prestop drain`` runs as a real subprocess against one instance while
the consumer keeps sending requests. The result says how many requests failed (the goal: 0).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prestop_lab import procs
from prestop_lab.consumer import Consumer, ConsumerConfig
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator

SERVICE = "demo"
LAB_USER, LAB_PASSWORD = "nacos", "lab-only-password"


@dataclass
class DemoSettings:
    flavour: str = "2.x"
    auth: bool = False
    rate: float = 50.0
    staleness: float = 1.0  # consumer's poll interval
    budget: float = 20.0
    latency_ms: float = 20.0
    push_delay: float = 0.5
    stack: str = "emulator"  # or "real": lab/java's servers and Spring Cloud apps


@dataclass
class DemoResult:
    requests: int
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    per_instance: dict[str, int]
    agent_exit_code: int | None
    agent_duration_s: float
    time_to_invisible_s: float | None
    drain_s: float | None
    drain_reason: str | None
    requests_after_take_out: float | None
    shutdown_confirmed: bool
    app_exit_code: int | None
    consumers_let_go: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    agent_log: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.agent_exit_code == 0 and self.shutdown_confirmed


def summary_line(lines: list[str]) -> dict[str, Any]:
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "prestop_summary":
            return event
    return {}


def start_app(nacos_addr: str | None, port: int, latency_ms: float, *extra: str) -> procs.Proc:
    """A demo app process, registered in ``nacos_addr`` (None: not registered anywhere)."""
    registration = ["--nacos-addr", nacos_addr] if nacos_addr else []
    app = procs.start(
        f"app-{port}",
        procs.python_module(
            "prestop_lab.demo_app",
            "--port",
            str(port),
            *registration,
            "--service",
            SERVICE,
            "--ip",
            "127.0.0.1",
            "--latency-ms",
            str(latency_ms),
            *extra,
        ),
        ready_marker="DEMO_APP_READY",
    )
    app.wait_ready(20)
    return app


def agent_env(nacos_addr: str, port: int, budget: float, auth: bool) -> dict[str, str]:
    env = {
        "PRESTOP_NACOS_ADDR": nacos_addr,
        "PRESTOP_SERVICE": SERVICE,
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_BUDGET": str(budget),
        "PRESTOP_LOG_FORMAT": "json",
        "PRESTOP_LOG_TO_PID1": "false",
        # Lab consumers serve /actuator/nacosdiscovery; the agent logs when each let go.
        "PRESTOP_CONSUMER_PORT": "auto",
    }
    if auth:
        env |= {"PRESTOP_USERNAME": LAB_USER, "PRESTOP_PASSWORD": LAB_PASSWORD}
    return env


def run_demo(settings: DemoSettings) -> DemoResult:
    config = EmulatorConfig(
        flavour=settings.flavour,  # type: ignore[arg-type]
        auth_enabled=settings.auth,
        admin_auth_enabled=settings.auth,
        users={LAB_USER: LAB_PASSWORD},
        push_delay=settings.push_delay,
    )
    apps: list[procs.Proc] = []
    with NacosEmulator(config) as nacos:
        try:
            ports = [procs.free_port(), procs.free_port()]
            apps = [start_app(nacos.addr, p, settings.latency_ms) for p in ports]
            if not procs.wait_for(lambda: len(nacos.consumer_view(SERVICE)) == 2, 10):
                raise RuntimeError("the demo apps did not show up in the emulator")
            consumer = Consumer(
                ConsumerConfig(
                    nacos_url=nacos.url,
                    service=SERVICE,
                    api="v3" if settings.flavour == "3.x" else "v1",
                    refresh_interval=settings.staleness,
                    rate=settings.rate,
                    duration=settings.budget + 60,
                    management=True,
                    username=LAB_USER if settings.auth else None,
                    password=LAB_PASSWORD if settings.auth else None,
                )
            )
            with consumer:
                time.sleep(2.0)  # both instances take traffic before the drain starts
                agent = procs.start(
                    "prestop-drain",
                    procs.prestop_argv("drain"),
                    env=agent_env(nacos.addr, ports[0], settings.budget, settings.auth),
                )
                started = time.monotonic()
                agent_rc = agent.wait(settings.budget + 10)
                agent_duration = time.monotonic() - started
                if agent_rc is None:
                    agent.kill()
                app_rc = apps[0].wait(10)
                time.sleep(1.0)  # the consumer keeps going: any late request would fail now
            stats = consumer.stats()
        finally:
            for app in apps:
                app.kill()
    return _result(stats, agent, agent_rc, agent_duration, app_rc)


def run_real_demo(settings: DemoSettings) -> DemoResult:
    """The same demo on the real stack: a real Nacos (auth on), two Spring Cloud Alibaba
    providers, a Spring Cloud LoadBalancer consumer whose cache lives ``staleness`` seconds."""
    from prestop_lab.real import (
        JavaConsumer,
        NacosServer,
        nacos_agent_env,
        registry_args,
        start_provider,
    )

    apps: list[procs.Proc] = []
    with NacosServer("3.x" if settings.flavour == "3.x" else "2.x") as nacos:
        registry = registry_args(nacos, fetch_s=30, renewal_s=5)
        consumer = JavaConsumer(
            registry, rate=settings.rate, lb_cache_ttl_s=settings.staleness, tail_probability=0
        )
        try:
            ports = [procs.free_port(), procs.free_port()]
            apps = [start_provider(p, registry) for p in ports]
            if not procs.wait_for(lambda: len(nacos.consumer_view()) == 2, 60):
                raise RuntimeError("the providers did not show up in Nacos")
            consumer.launch()
            consumer.start()
            procs.wait_for(lambda: len(consumer.stats()["per_instance"]) == 2, 30)
            env = nacos_agent_env(nacos, ports[0], settings.budget)
            agent = procs.start("prestop-drain", procs.prestop_argv("drain"), env=env)
            started = time.monotonic()
            agent_rc = agent.wait(settings.budget + 10)
            agent_duration = time.monotonic() - started
            if agent_rc is None:
                agent.kill()
            app_rc = apps[0].wait(30)
            time.sleep(1.0)  # the consumer keeps going: any late request would fail now
            consumer.stop()
            stats = consumer.stats()
        finally:
            consumer.kill()
            for app in apps:
                app.kill()
    return _result(stats, agent, agent_rc, agent_duration, app_rc)


def _result(
    stats: dict[str, Any],
    agent: procs.Proc,
    agent_rc: int | None,
    agent_duration: float,
    app_rc: int | None,
) -> DemoResult:
    summary = summary_line(agent.lines)
    phases = summary.get("phases", {})
    confirm, drain, shutdown = (phases.get(k, {}) for k in ("confirm", "drain", "shutdown"))
    return DemoResult(
        requests=int(stats["total"]),
        ok=int(stats["ok"]),
        errors=int(stats["errors"]),
        errors_by_kind=dict(stats["errors_by_kind"]),
        per_instance=dict(stats["per_instance"]),
        agent_exit_code=agent_rc,
        agent_duration_s=round(agent_duration, 3),
        time_to_invisible_s=confirm.get("time_to_invisible_s"),
        drain_s=drain.get("duration_s"),
        drain_reason=drain.get("reason"),
        requests_after_take_out=drain.get("requests_after_take_out"),
        shutdown_confirmed=bool(shutdown.get("app_stopped")),
        app_exit_code=app_rc,
        consumers_let_go=dict(drain.get("consumers", {}).get("let_go", {})),
        summary=summary,
        agent_log=list(agent.lines),
    )


def render(result: DemoResult, settings: DemoSettings) -> str:
    if settings.stack == "real":
        nacos = f"real Nacos {settings.flavour} (auth on)"
        consumer = f"{settings.rate:g} req/s, load-balancer cache {settings.staleness:g} s"
    else:
        nacos = settings.flavour + " emulator" + (" (auth on)" if settings.auth else "")
        consumer = f"{settings.rate:g} req/s, refreshes every {settings.staleness:g} s"
    rows = [
        ("nacos", nacos),
        ("consumer", consumer),
        ("requests", result.requests),
        ("failed requests", result.errors),
        ("errors by kind", result.errors_by_kind or "-"),
        ("per instance", result.per_instance),
        ("time to invisible", _s(result.time_to_invisible_s)),
        ("drain", f"{_s(result.drain_s)} ({result.drain_reason})"),
        ("requests after take-out", result.requests_after_take_out),
        ("consumers let go after", result.consumers_let_go or "-"),
        ("shutdown confirmed", "yes" if result.shutdown_confirmed else "NO"),
        ("agent exit code", result.agent_exit_code),
        ("agent total", _s(result.agent_duration_s) + f" of a {settings.budget:g} s budget"),
        ("result", "PASS: zero lost requests" if result.passed else "FAIL"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def write_json(result: DemoResult, settings: DemoSettings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"settings": asdict(settings), "result": asdict(result)}, indent=2) + "\n"
    )
