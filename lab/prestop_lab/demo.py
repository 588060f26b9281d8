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
from prestop_lab.progress import QUIET, Progress

SERVICE = "demo"
MIN_WAIT_SLACK = 0.3  # the drain's sampling interval (0.25 s) and a little scheduling
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
    drained_instance: str = ""  # ip:port the agent drained
    min_wait_s: float | None = None  # the agent's --min-wait, from its config_loaded line
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


def run_demo(settings: DemoSettings, progress: Progress = QUIET) -> DemoResult:
    config = EmulatorConfig(
        flavour=settings.flavour,  # type: ignore[arg-type]
        auth_enabled=settings.auth,
        admin_auth_enabled=settings.auth,
        users={LAB_USER: LAB_PASSWORD},
        push_delay=settings.push_delay,
    )
    apps: list[procs.Proc] = []
    progress.say("lab", f"starting the Nacos {settings.flavour} emulator and 2 demo apps")
    with NacosEmulator(config) as nacos:
        try:
            ports = [procs.free_port(), procs.free_port()]
            apps = [start_app(nacos.addr, p, settings.latency_ms) for p in ports]
            if not procs.wait_for(lambda: len(nacos.consumer_view(SERVICE)) == 2, 10):
                raise RuntimeError("the demo apps did not show up in the emulator")
            _say_apps(progress, ports)
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
                progress.say(
                    "lab",
                    f"consumer sending {settings.rate:g} req/s, refreshing its list every "
                    f"{settings.staleness:g} s; both apps take traffic for 2 s",
                )
                time.sleep(2.0)  # both instances take traffic before the drain starts
                env = agent_env(nacos.addr, ports[0], settings.budget, settings.auth)
                agent, agent_rc, agent_duration = _drain(env, ports[0], settings, progress)
                app_rc = apps[0].wait(10)
                progress.say("lab", "consumer keeps sending for 1 s: a late request would fail")
                time.sleep(1.0)  # the consumer keeps going: any late request would fail now
            stats = consumer.stats()
        finally:
            for app in apps:
                app.kill()
    return _result(stats, agent, agent_rc, agent_duration, app_rc, ports[0])


def _say_apps(progress: Progress, ports: list[int]) -> None:
    progress.say(
        "lab",
        f"apps registered: 127.0.0.1:{ports[0]} (to be drained), 127.0.0.1:{ports[1]}",
    )


def _drain(
    env: dict[str, str], port: int, settings: DemoSettings, progress: Progress
) -> tuple[procs.Proc, int | None, float]:
    """``prestop drain`` against ``port``: (process, exit code or None if killed, seconds)."""
    progress.say("agent", f"prestop drain 127.0.0.1:{port} started")
    agent = procs.start("prestop-drain", procs.prestop_argv("drain"), env=env)
    started = time.monotonic()
    with progress.follow(agent, "agent"):
        agent_rc = agent.wait(settings.budget + 10)
    agent_duration = time.monotonic() - started
    if agent_rc is None:
        agent.kill()
        progress.say("agent", f"still running after {agent_duration:.1f} s: killed")
    else:
        progress.say("agent", f"exit {agent_rc} after {agent_duration:.1f} s")
    return agent, agent_rc, agent_duration


def run_real_demo(settings: DemoSettings, progress: Progress = QUIET) -> DemoResult:
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
    progress.say("lab", f"starting real Nacos {settings.flavour} (up to a minute)")
    with NacosServer("3.x" if settings.flavour == "3.x" else "2.x") as nacos:
        registry = registry_args(nacos, fetch_s=30, renewal_s=5)
        consumer = JavaConsumer(
            registry, rate=settings.rate, lb_cache_ttl_s=settings.staleness, tail_probability=0
        )
        try:
            ports = [procs.free_port(), procs.free_port()]
            progress.say("lab", "starting 2 Spring Cloud providers")
            apps = [start_provider(p, registry) for p in ports]
            if not procs.wait_for(lambda: len(nacos.consumer_view()) == 2, 60):
                raise RuntimeError("the providers did not show up in Nacos")
            _say_apps(progress, ports)
            progress.say("lab", "starting the Spring Cloud consumer")
            consumer.launch()
            consumer.start()
            procs.wait_for(lambda: len(consumer.stats()["per_instance"]) == 2, 30)
            progress.say("lab", f"consumer sending {settings.rate:g} req/s to both providers")
            env = nacos_agent_env(nacos, ports[0], settings.budget)
            agent, agent_rc, agent_duration = _drain(env, ports[0], settings, progress)
            app_rc = apps[0].wait(30)
            progress.say("lab", "consumer keeps sending for 1 s: a late request would fail")
            time.sleep(1.0)  # the consumer keeps going: any late request would fail now
            consumer.stop()
            stats = consumer.stats()
        finally:
            consumer.kill()
            for app in apps:
                app.kill()
    return _result(stats, agent, agent_rc, agent_duration, app_rc, ports[0])


def _config_line(lines: list[str]) -> dict[str, Any]:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "config_loaded":
            return event
    return {}


def _result(
    stats: dict[str, Any],
    agent: procs.Proc,
    agent_rc: int | None,
    agent_duration: float,
    app_rc: int | None,
    port: int,
) -> DemoResult:
    summary = summary_line(agent.lines)
    min_wait = _config_line(agent.lines).get("min_wait")
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
        drained_instance=str(summary.get("instance") or f"127.0.0.1:{port}"),
        min_wait_s=float(min_wait) if isinstance(min_wait, (int, float)) else None,
        summary=summary,
        agent_log=list(agent.lines),
    )


def render(result: DemoResult, settings: DemoSettings) -> str:
    """The demo's outcome for people: which instance, each phase and what set the drain."""
    if settings.stack == "real":
        setup = (
            f"real Nacos {settings.flavour} (auth on), 2 Spring Cloud providers, a consumer at "
            f"{settings.rate:g} req/s with a {settings.staleness:g} s load-balancer cache"
        )
    else:
        auth = " (auth on)" if settings.auth else ""
        setup = (
            f"Nacos {settings.flavour} emulator{auth}, 2 demo apps, a consumer at "
            f"{settings.rate:g} req/s refreshing its list every {settings.staleness:g} s"
        )
    drained = result.drained_instance
    others = [i for i in result.per_instance if i != drained]
    kept = f"; {', '.join(others)} kept serving" if others else ""
    failed = f"{result.errors} failed" + (
        " ("
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.errors_by_kind.items())
        + ")"
        if result.errors_by_kind
        else ""
    )
    width = max((len(i) for i in result.per_instance), default=0)
    per_instance = [
        f"{i:<{width}}  {n:>5} req" + ("  (drained)" if i == drained else "")
        for i, n in sorted(result.per_instance.items(), key=lambda kv: kv[0] != drained)
    ]
    top: list[tuple[str, str]] = [
        ("drained", f"{drained} (prestop drain ran against it{kept})"),
        ("requests", f"{result.requests} req sent, {failed}"),
        *(("", line) for line in per_instance),
    ]
    lines = [f"prestop lab: {setup}", ""]
    lines += [f"{k:<10}{v}" for k, v in top]
    lines += ["", f"{'phase':<10}{'took':>8}   what happened"]
    lines += [f"{k:<10}{v:>8}   {w}" for k, v, w in _phase_rows(result, settings)]
    if result.consumers_let_go:
        lines.append("")
        lines += [
            f"consumer {c} let go of it {_s(after)} into the drain"
            for c, after in result.consumers_let_go.items()
        ]
    verdict = "PASS: zero lost requests" if result.passed else "FAIL"
    if not result.passed:
        why = []
        if result.errors:
            why.append(f"{result.errors} requests failed")
        if result.agent_exit_code != 0:
            why.append(f"agent exit code {result.agent_exit_code}")
        if not result.shutdown_confirmed:
            why.append("the app's stop was not confirmed")
        verdict += ": " + ", ".join(why)
    lines += ["", f"{'result':<10}{verdict}"]
    return "\n".join(lines)


def _phase_rows(result: DemoResult, settings: DemoSettings) -> list[tuple[str, str, str]]:
    phases: dict[str, dict[str, Any]] = result.summary.get("phases", {})
    take_out, confirm, drain, shutdown = (
        phases.get(k, {}) for k in ("take_out", "confirm", "drain", "shutdown")
    )
    rows: list[tuple[str, str, str]] = []
    if take_out:
        how = take_out.get("method") or take_out.get("error") or take_out.get("outcome")
        version = take_out.get("server_version")
        rows.append(
            (
                "take-out",
                _s(take_out.get("duration_s")),
                f"{how}" + (f" on Nacos {version}" if version else ""),
            )
        )
    if confirm:
        seen = confirm.get("time_to_invisible_s")
        rows.append(
            (
                "confirm",
                _s(confirm.get("duration_s")),
                f"the consumers' list no longer had it after {_s(seen)}"
                if seen is not None
                else str(confirm.get("error") or confirm.get("outcome")),
            )
        )
    if drain:
        rows.append(("drain", _s(drain.get("duration_s")), drain_setter(drain, result.min_wait_s)))
        rate, after = drain.get("rate_before"), drain.get("requests_after_take_out")
        traffic = [f"{rate:.1f} req/s before the take-out"] if _number(rate) else []
        traffic += [f"{after:g} req after it"] if _number(after) else []
        if traffic:
            rows.append(("", "", ", ".join(traffic)))
    if shutdown:
        stopped = shutdown.get("stopped_after_s")
        what = str(shutdown.get("detail") or shutdown.get("how") or shutdown.get("outcome"))
        what += (
            f"; port closed after {_s(stopped)}"
            if stopped is not None
            else "; NOT confirmed stopped"
        )
        rows.append(("shutdown", _s(shutdown.get("duration_s")), what))
    total = result.summary.get("duration_s")
    rows.append(
        (
            "total",
            _s(total),
            f"of a {settings.budget:g} s budget (agent process {_s(result.agent_duration_s)}, "
            f"exit {result.agent_exit_code})",
        )
    )
    return rows


def drain_setter(drain: dict[str, Any], min_wait: float | None) -> str:
    """What ended the drain: --min-wait, the consumers, the quiet window, or a cap."""
    reason = drain.get("reason")
    window = drain.get("quiet_window_s")
    took = drain.get("duration_s")
    if reason == "max_wait":
        return "gave up at --max-wait: traffic did not stop"
    if reason == "deadline":
        return "gave up: the budget ran out before traffic stopped"
    if reason == "consumers_let_go":
        if (
            min_wait is not None
            and isinstance(took, (int, float))
            and took <= min_wait + MIN_WAIT_SLACK
        ):
            return f"set by --min-wait {min_wait:g} s: every consumer had let go before"
        return "set by the consumers: every one let go, nothing was in flight"
    if reason != "quiet":
        return f"ended: {reason}"
    # Drained within one sampling interval of --min-wait: the quiet window had passed already.
    if (
        min_wait is not None
        and isinstance(took, (int, float))
        and took <= min_wait + MIN_WAIT_SLACK
    ):
        return f"set by --min-wait {min_wait:g} s: the quiet window ({_s(window)}) had passed"
    return f"set by the quiet window: {_s(window)} without a new request"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def json_doc(result: DemoResult, settings: DemoSettings) -> dict[str, Any]:
    return {"settings": asdict(settings), "result": asdict(result)}


def write_json(result: DemoResult, settings: DemoSettings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_doc(result, settings), indent=2) + "\n")
