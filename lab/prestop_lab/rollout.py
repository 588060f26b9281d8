"""``prestop lab rollout``: a Deployment's rolling update on loopback, as a benchmark.

Real processes: N demo app replicas registered in the Nacos emulator; consumers with realistic
staleness (Nacos push, periodic polling, push behind a load-balancer cache); a load with a long
tail of request durations; and a kubelet stand-in that, pod by pod, starts the new pod, waits
until it is ready and registered, then terminates the old one as kubelet does: preStop, then
SIGTERM, then SIGKILL at the grace period. Strategies for the preStop: ``none``, ``sleep`` (the
usual deregister + fixed sleep + shutdown script) and ``agent`` (``prestop drain``).

Per pod it measures the drain (preStop start to the app's port closing) and its lower bound,
both from the preStop's start: when the last request the pod received had been answered. All
staleness values are multiplied by ``time_scale``.

At low request rates the last request says little: a consumer whose load balancer still lists
the pod may simply not have sent it anything yet, and a drain that ended then would lose its
next request. So the bound is also at least the last moment any consumer's routing list (the
list a request would be routed by: the load-balancer cache entry, or without one the discovery
view) contained the pod, from the same start (``Load.routable_until``; the Spring consumer
samples its cache every 50 ms). A drain shorter than that was lucky, not safe. To that the
bound adds the app's own stop time, from the shutdown POST (or signal; else SIGTERM) to its
port closing (Spring Boot's shutdown endpoint alone waits 0.5 s): the drain is measured to the
port closing, and a drain that stops the app only once traffic has ended cannot close it
sooner.

``notify`` gives the agent the consumers' actuator (``PRESTOP_CONSUMER_ACTUATOR``) so that it
can evict their load-balancer caches and confirm they let go; ``consumer_endpoints
="all-but-one"`` plays one consumer that does not expose those endpoints (the agent must fall
back to its quiet window).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from agent.shutdown import port_open
from prestop_lab import procs
from prestop_lab.consumer import Consumer, ConsumerConfig, Record
from prestop_lab.demo import SERVICE, agent_env, start_app, summary_line
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator
from prestop_lab.progress import QUIET, Progress

STRATEGIES = ("none", "sleep", "agent")
TOKEN = "lab-sidecar-token"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS from /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class RolloutSettings:
    strategy: str = "agent"
    replicas: int = 3
    rate: float = 60.0  # requests per second over all consumers
    time_scale: float = 0.25
    lb_cache_ttl: float = 35.0  # Spring Cloud LoadBalancer's default, before scaling
    poll_interval: float = 10.0  # a polling consumer's refresh, before scaling
    grace: float = 45.0  # terminationGracePeriodSeconds (not scaled)
    latency_ms: float = 20.0
    latency_tail: float = 0.01
    tail_ms: float = 2000.0
    push_delay: float = 0.5
    seed: int = 7
    mode: str = "exec"  # agent strategy: "exec" preStop, or "sidecar" (httpGet to prestop serve)
    registry: str = "nacos"  # or "eureka": Eureka emulator, Eureka-style consumers
    eureka_cache: float = 30.0  # Eureka server's read-only cache tick, before scaling
    eureka_fetch: float = 30.0  # consumers' registry fetch interval, before scaling
    stack: str = "emulator"  # or "real": real servers and Spring Cloud apps (lab/java)
    flavour: str = "2.x"  # the real Nacos server's line: "2.x" or "3.x"
    # Sidecar mode: "hold" keeps each new instance out until it is ready (see startup_env).
    startup: str = "none"
    # Seconds of load before the rollout (the steady state new pods are compared with) and
    # after it (the last new pod's first seconds); 0: the short settle only.
    steady_s: float = 0.0
    cold_cache_entries: int = 150_000  # the real provider's lazily built cache (lab/java)
    notify: bool = False  # agent strategy: tell it the consumers' actuator (cache eviction)
    min_wait: float | None = None  # agent strategy: its --min-wait (None: the agent's 2 s)
    consumer_endpoints: str = "all"  # or "all-but-one": one consumer exposes no actuator

    @property
    def scaled_lb_ttl(self) -> float:
        return self.lb_cache_ttl * self.time_scale

    @property
    def scaled_poll(self) -> float:
        return self.poll_interval * self.time_scale

    @property
    def sleep_seconds(self) -> float:
        # What a careful team would pick for the fixed sleep: the slowest cache plus a margin.
        if self.registry == "eureka":
            # Server cache tick + client fetch + load-balancer cache (the ~95 s worst case).
            return (
                (self.eureka_cache + self.eureka_fetch) * self.time_scale + self.scaled_lb_ttl + 2
            )
        return self.scaled_lb_ttl + max(self.scaled_poll, 1.0) + 2.0


@dataclass
class PodResult:
    instance: str
    drain_s: float | None  # preStop start → the app's port refused connections
    bound_s: float  # last request answered or routable, + the app's stop time (docstring)
    ratio: float | None
    errors: int
    prestop_exit: int | None
    killed: bool
    prestop_summary: dict[str, Any] = field(default_factory=dict)
    sidecar_rss_mb: float | None = None  # idle, just before the pod's termination
    hook_overhead_s: float | None = None  # the httpGet call's time minus the sequence's own
    pod: str = ""  # old-1, old-2, …: its lane in the report


@dataclass
class PodEvent:
    """A moment in a pod's life during the rollout: the report's marks.

    ``kind``: ``started`` and ``ready`` (new pods); ``prestop_start``, ``take_out``,
    ``confirmed`` (consumers' list no longer has it), ``drain_end``, ``shutdown`` (the POST, or
    the agent's signal to the app), ``prestop_end``, ``sigterm``, ``port_closed``, ``sigkill``
    (old pods). The agent's phases come from its summary, counted back from the preStop's end.
    """

    pod: str  # old-N: a pod the rollout replaced; new-N: one it started
    instance: str
    kind: str
    t: float  # seconds from the rollout's start


@dataclass
class RolloutResult:
    strategy: str
    requests: int
    errors: int
    errors_by_kind: dict[str, int]
    rollout_s: float
    pods: list[PodResult] = field(default_factory=list)
    events: list[PodEvent] = field(default_factory=list)
    # Every request the consumers made, for the report's picture; not written to the JSON.
    records: list[Record] = field(default_factory=list, repr=False)
    started_at: float = field(default=0.0, repr=False)  # time.monotonic() at the rollout's start
    start: StartLatency | None = None  # new pods' first seconds against the steady state

    @property
    def worst_ratio(self) -> float | None:
        ratios = [p.ratio for p in self.pods if p.ratio is not None]
        return max(ratios) if ratios else None


NEW_POD_WINDOW_S = 30.0


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 100 values is the 99th)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class NewPodLatency:
    instance: str
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class StartLatency:
    """Requests served by each new pod in its first ``window_s`` vs the old pods' steady state."""

    window_s: float
    steady_requests: int
    steady_p50_ms: float | None
    steady_p99_ms: float | None
    new_requests: int
    new_errors: int
    new_p50_ms: float | None
    new_p99_ms: float | None
    p99_ratio: float | None  # new pods' first-window p99 / steady p99
    pods: list[NewPodLatency] = field(default_factory=list)


def start_latency(
    records: list[Record],
    old: list[str],
    new: list[str],
    rollout_started: float,
    steady_from: float,
    window_s: float = NEW_POD_WINDOW_S,
) -> StartLatency:
    """New pods' first ``window_s`` from their first request; steady: old pods before the
    rollout, from ``steady_from`` (after their own cold start)."""

    def ms(r: Record) -> float:
        return (r.end - r.start) * 1000

    steady = [
        ms(r)
        for r in records
        if r.instance in old and steady_from <= r.start < rollout_started and r.outcome == "ok"
    ]
    pods: list[NewPodLatency] = []
    pooled: list[float] = []
    errors = 0
    for instance in new:
        mine = [r for r in records if r.instance == instance]
        if not mine:
            pods.append(NewPodLatency(instance, 0, 0, None, None, None))
            continue
        first = min(r.start for r in mine)
        window = [r for r in mine if r.start < first + window_s]
        ok = [ms(r) for r in window if r.outcome == "ok"]
        failed = len(window) - len(ok)
        errors += failed
        pooled += ok
        p50, p99 = _percentile(ok, 50), _percentile(ok, 99)
        pods.append(
            NewPodLatency(
                instance,
                len(window),
                failed,
                None if p50 is None else round(p50, 1),
                None if p99 is None else round(p99, 1),
                round(max(ok), 1) if ok else None,
            )
        )
    s50, s99 = _percentile(steady, 50), _percentile(steady, 99)
    n50, n99 = _percentile(pooled, 50), _percentile(pooled, 99)
    return StartLatency(
        window_s=window_s,
        steady_requests=len(steady),
        steady_p50_ms=None if s50 is None else round(s50, 1),
        steady_p99_ms=None if s99 is None else round(s99, 1),
        new_requests=len(pooled) + errors,
        new_errors=errors,
        new_p50_ms=None if n50 is None else round(n50, 1),
        new_p99_ms=None if n99 is None else round(n99, 1),
        p99_ratio=None if not s99 or n99 is None else round(n99 / s99, 2),
        pods=pods,
    )


def startup_env(s: RolloutSettings, app_port: int) -> dict[str, str]:
    """The sidecar's start-up hold for a lab pod: out until a business request answers (the
    real provider builds its cache on the first one, so the sidecar's poll warms it), then a
    short delay and, on Nacos, the weight warm-up."""
    if s.startup != "hold":
        return {}
    ready = "/api/work" if s.stack == "real" else "/actuator/health/readiness"
    env = {
        "PRESTOP_STARTUP_HOLD": "on",
        "PRESTOP_READY_URL": f"http://127.0.0.1:{app_port}{ready}",
        "PRESTOP_STARTUP_DELAY": "3",
    }
    if s.registry == "nacos":
        env["PRESTOP_WARMUP"] = "10"
    return env


def _bound(records: list[Record], instance: str, t0: float) -> float:
    """When, after ``t0``, the last request the pod received had been answered."""
    ends = [r.end for r in records if r.instance == instance and r.end >= t0]
    return max(ends) - t0 if ends else 0.0


def _routable_bound(consumers: Sequence[Load], instance: str, t0: float) -> float:
    """How long after ``t0`` some consumer could still have routed a request to ``instance``."""
    until = [t for c in consumers if (t := c.routable_until(instance)) is not None]
    return max(0.0, max(until) - t0) if until else 0.0


def _app_stop(marks: list[tuple[str, float]]) -> float:
    """How long the app took from being told to stop (the shutdown POST or signal, else
    SIGTERM) to its port closing; 0 when not seen. No drain that stops the app only after the
    traffic ended can be shorter than the traffic's end plus this (Spring waits 0.5 s)."""
    at = dict(marks)
    told = at.get("shutdown", at.get("sigterm"))
    closed = at.get("port_closed")
    if told is None or closed is None or closed < told:
        return 0.0
    return closed - told


class NacosLab:
    """The Nacos emulator and what the rollout needs from it."""

    name = "nacos"

    def __init__(self, s: RolloutSettings) -> None:
        self.s = s
        self.emulator = NacosEmulator(EmulatorConfig(push_delay=s.push_delay, metadata_expiry=60.0))

    def __enter__(self) -> NacosLab:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()

    def start_app(self, port: int) -> procs.Proc:
        return start_app(self.emulator.addr, port, self.s.latency_ms, *demo_app_tail(self.s))

    def sleep_seconds(self) -> float:
        return self.s.sleep_seconds

    def registered(self, port: int) -> bool:
        return any(h["port"] == port for h in self.emulator.consumer_view(SERVICE))

    def agent_env(self, port: int, budget: float) -> dict[str, str]:
        return agent_env(self.emulator.addr, port, budget, auth=False)

    def consumer_actuator(self) -> str | None:
        # Each consumer announces its management port as its subscriber port.
        return "http://{ip}:{port}/actuator"

    def take_out_by_hand(self, port: int) -> None:
        # curl -X PUT .../v1/ns/instance?...&enabled=false
        params = {"serviceName": SERVICE, "ip": "127.0.0.1", "port": str(port), "enabled": "false"}
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(f"{self.emulator.url}/nacos/v1/ns/instance", params=params, timeout=3)

    def consumers(self) -> list[Consumer]:
        s = self.s
        share = s.rate / 3
        common: dict[str, Any] = {
            "nacos_url": self.emulator.url,
            "service": SERVICE,
            "duration": 1800.0,
            "management": True,
        }
        consumers = [
            Consumer(ConsumerConfig(**common, name="push", discovery="watch", rate=share)),
            Consumer(
                ConsumerConfig(
                    **common, name="poll", refresh_interval=max(0.2, s.scaled_poll), rate=share
                )
            ),
            Consumer(
                ConsumerConfig(
                    **common,
                    name="lb-cache",
                    discovery="watch",
                    lb_cache_ttl=s.scaled_lb_ttl,
                    rate=share,
                    # The consumer that needs the eviction most is the one that hides it.
                    expose_endpoints=s.consumer_endpoints != "all-but-one",
                )
            ),
        ]
        return [c.launch() for c in consumers]


def eureka_agent_env(
    urls: str, service: str, port: int, budget: float, scale: float
) -> dict[str, str]:
    """The agent's environment for a lab pod registered in Eureka."""
    return {
        "PRESTOP_EUREKA_URL": urls,
        "PRESTOP_SERVICE": service,
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_BUDGET": str(budget),
        "PRESTOP_LOG_FORMAT": "json",
        "PRESTOP_LOG_TO_PID1": "false",
        # The Eureka defaults (cap 105 s, confirm 35 s), on the lab's time scale.
        "PRESTOP_MAX_WAIT": f"{105 * scale:g}",
        "PRESTOP_CONFIRM_TIMEOUT": f"{35 * scale:g}",
    }


class EurekaLab:
    """The Eureka emulator (time-scaled caches and leases) and Eureka-style consumers."""

    name = "eureka"

    def __init__(self, s: RolloutSettings) -> None:
        from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

        self.s = s
        self.emulator = EurekaEmulator(
            EurekaConfig(cache_update_interval=s.eureka_cache * s.time_scale)
        )

    def __enter__(self) -> EurekaLab:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()

    @staticmethod
    def instance_id(port: int) -> str:
        return f"pod-{port}:{SERVICE}:{port}"

    def start_app(self, port: int) -> procs.Proc:
        renewal = max(0.5, 30.0 * self.s.time_scale)
        eureka = ["--eureka-url", self.emulator.url, "--eureka-renewal", f"{renewal:g}"]
        return start_app(None, port, self.s.latency_ms, *eureka, *demo_app_tail(self.s))

    def sleep_seconds(self) -> float:
        return self.s.sleep_seconds

    def registered(self, port: int) -> bool:
        instance = self.emulator.instance(SERVICE.upper(), self.instance_id(port))
        return instance is not None and instance.get("status") == "UP"

    def agent_env(self, port: int, budget: float) -> dict[str, str]:
        return eureka_agent_env(self.emulator.url, SERVICE, port, budget, self.s.time_scale)

    def consumer_actuator(self) -> str | None:
        return None  # Eureka lists no subscribers

    def take_out_by_hand(self, port: int) -> None:
        # curl -X PUT .../eureka/apps/DEMO/<id>/status?value=OUT_OF_SERVICE
        url = f"{self.emulator.url}apps/{SERVICE.upper()}/{self.instance_id(port)}/status"
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(url, params={"value": "OUT_OF_SERVICE"}, timeout=3)

    def consumers(self) -> list[Consumer]:
        s = self.s
        share = s.rate / 3
        fetch = max(0.2, s.eureka_fetch * s.time_scale)
        common: dict[str, Any] = {
            "nacos_url": "",
            "registry": "eureka",
            "eureka_url": self.emulator.url,
            "service": SERVICE,
            "duration": 1800.0,
            "refresh_interval": fetch,
        }
        consumers = [
            # A DiscoveryClient used directly (no load-balancer cache).
            Consumer(ConsumerConfig(**common, name="fetch", rate=share)),
            # Ribbon: its server list refreshes every 30 s on top of the fetch.
            Consumer(
                ConsumerConfig(**common, name="ribbon", lb_cache_ttl=30 * s.time_scale, rate=share)
            ),
            # Spring Cloud LoadBalancer: 35 s cache on top of the fetch.
            Consumer(
                ConsumerConfig(**common, name="lb-cache", lb_cache_ttl=s.scaled_lb_ttl, rate=share)
            ),
        ]
        return [c.launch() for c in consumers]


class Load(Protocol):
    """Consumers sending the load: in-process (emulator) or a Spring Cloud process (real)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def records(self) -> list[Record]: ...

    def routable_until(self, instance: str) -> float | None: ...


class LabRegistry(Protocol):
    """What the rollout needs of a registry and its apps, emulated or real."""

    name: str

    def __enter__(self) -> LabRegistry: ...

    def __exit__(self, *exc: object) -> None: ...

    def start_app(self, port: int) -> procs.Proc: ...

    def registered(self, port: int) -> bool: ...

    def agent_env(self, port: int, budget: float) -> dict[str, str]: ...

    def consumer_actuator(self) -> str | None: ...

    def take_out_by_hand(self, port: int) -> None: ...

    def sleep_seconds(self) -> float: ...

    def consumers(self) -> Sequence[Load]:
        """This rollout's consumers, launched: discovering, but sending nothing before
        ``start()``."""
        ...


def demo_app_tail(s: RolloutSettings) -> list[str]:
    """The emulated app's long tail of request durations (the real consumer asks for it)."""
    return ["--latency-tail", str(s.latency_tail), "--tail-ms", str(s.tail_ms)]


def make_lab(s: RolloutSettings) -> LabRegistry:
    if s.stack == "real":
        from prestop_lab.real import RealEurekaLab, RealNacosLab

        return RealEurekaLab(s) if s.registry == "eureka" else RealNacosLab(s)
    return EurekaLab(s) if s.registry == "eureka" else NacosLab(s)


class Kubelet:
    """Terminates a pod the way kubelet does, with one of the preStop strategies."""

    def __init__(
        self, settings: RolloutSettings, lab: LabRegistry, progress: Progress = QUIET, who: str = ""
    ) -> None:
        self.s = settings
        self.lab = lab
        self.summaries: dict[int, dict[str, Any]] = {}
        self.sidecars: dict[int, tuple[procs.Proc, int]] = {}  # app port -> (process, port)
        self.rss_mb: dict[int, float] = {}
        self.overhead_s: dict[int, float] = {}
        self.progress = progress
        self.who = who or settings.strategy
        self.names: dict[int, str] = {}  # app port -> old-1, …
        self.marks: dict[int, list[tuple[str, float]]] = {}  # app port -> (kind, monotonic)

    def mark(self, port: int, kind: str, at: float | None = None, say: str = "") -> None:
        self.marks.setdefault(port, []).append((kind, time.monotonic() if at is None else at))
        if say:
            self.progress.say(self.who, f"{self.names.get(port, port)} {say}")

    def _mark_phases(self, port: int, summary: dict[str, Any], ended: float) -> None:
        """The agent's phases, counted back from the summary's log time (else ``ended``, the
        preStop's end, which is a process exit later) by the phases' durations."""
        phases = summary.get("phases", {})
        ends: dict[str, float] = {}
        at = _monotonic_of(summary.get("timestamp"), ended)
        for name, phase in reversed(list(phases.items())):
            ends[name] = at
            at -= float(phase.get("duration_s") or 0.0)
        if phases.get("take_out", {}).get("outcome") == "ok":
            self.mark(port, "take_out", ends["take_out"])
        if phases.get("confirm", {}).get("time_to_invisible_s") is not None:
            self.mark(port, "confirmed", ends["confirm"])
        if "drain" in ends:
            self.mark(port, "drain_end", ends["drain"])
        if phases.get("shutdown", {}).get("how") not in (None, "none"):
            self.mark(port, "shutdown", ends.get("drain", ended))

    def start_sidecar(self, app_port: int) -> None:
        """A `prestop serve` container beside the app, sharing its network namespace."""
        side_port = procs.free_port()
        budget = max(1.0, self.s.grace - 3.0)
        env = {**self.agent_env(app_port, budget), "PRESTOP_TOKEN": TOKEN}
        env |= startup_env(self.s, app_port)
        proc = procs.start(
            f"sidecar-{app_port}",
            procs.prestop_argv("serve", "--listen", f"127.0.0.1:{side_port}"),
            env=env,
            ready_marker="sidecar_listening",
        )
        proc.wait_ready(20)
        self.sidecars[app_port] = (proc, side_port)

    def ready(self, app_port: int) -> bool:
        """The pod's readiness probe: the sidecar's /readyz when there is one (it is false
        during a start-up hold), else ready."""
        if app_port not in self.sidecars:
            return True
        try:
            url = f"http://127.0.0.1:{self.sidecars[app_port][1]}/readyz"
            return httpx.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self, app: procs.Proc, port: int) -> tuple[float, float | None, int | None, bool]:
        """Returns (t0, seconds until the port closed, preStop exit code, SIGKILLed?)."""
        t0 = time.monotonic()
        closed: list[float] = []
        watcher = threading.Thread(target=self._watch_port, args=(port, t0, closed), daemon=True)
        watcher.start()
        deadline = t0 + self.s.grace
        if self.s.strategy != "none":
            self.mark(port, "prestop_start", t0, say="preStop started")
        prestop_exit = self._prestop(port, deadline)
        if self.s.strategy != "none":
            self.mark(port, "prestop_end", say=f"preStop ended (exit {prestop_exit})")
        if app.popen.poll() is None:
            self.mark(port, "sigterm", say="SIGTERM")
            app.popen.send_signal(signal.SIGTERM)
        killed = app.wait(max(0.1, deadline - time.monotonic())) is None
        if killed:
            self.mark(port, "sigkill", say=f"SIGKILL at the grace period ({self.s.grace:g} s)")
            app.kill()
        watcher.join(2)
        if closed:
            self.mark(port, "port_closed", closed[0])
            self.progress.say(
                self.who,
                f"{self.names.get(port, port)} gone: port closed {closed[0] - t0:.1f} s"
                " after the termination began",
            )
        return t0, (closed[0] - t0) if closed else None, prestop_exit, killed

    def agent_env(self, port: int, budget: float) -> dict[str, str]:
        env = self.lab.agent_env(port, budget)
        actuator = self.lab.consumer_actuator()
        # Without --notify the agent drains by its quiet window alone (the demo's env tells
        # the consumers; the benchmark compares both ways).
        env.pop("PRESTOP_CONSUMER_PORT", None)
        if self.s.notify and actuator is not None:
            env["PRESTOP_CONSUMER_ACTUATOR"] = actuator
        if self.s.min_wait is not None:
            env["PRESTOP_MIN_WAIT"] = f"{self.s.min_wait:g}"
        return env

    @staticmethod
    def _watch_port(port: int, t0: float, closed: list[float]) -> None:
        while time.monotonic() - t0 < 600:
            if not port_open("127.0.0.1", port, 0.2):
                closed.append(time.monotonic())
                return
            time.sleep(0.02)

    def _prestop(self, port: int, deadline: float) -> int | None:
        if self.s.strategy == "none":
            return None
        if self.s.strategy == "sleep":
            return self._sleep_script(port, deadline)
        if port in self.sidecars:
            return self._http_hook(port, deadline)
        budget = max(1.0, self.s.grace - 3.0)
        agent = procs.start(
            f"prestop-{port}",
            procs.prestop_argv("drain"),
            env=self.agent_env(port, budget),
        )
        with self.progress.follow(agent, self.who, self.names.get(port, "")):
            code = agent.wait(max(0.1, deadline - time.monotonic()))
        if code is None:
            agent.kill()
        self.summaries[port] = summary_line(agent.lines)
        self._mark_phases(port, self.summaries[port], time.monotonic())
        return code

    def _http_hook(self, port: int, deadline: float) -> int:
        """Kubelet's httpGet preStop; the plain sidecar container gets SIGTERM at the same time."""
        proc, side_port = self.sidecars.pop(port)
        self.rss_mb[port] = rss_mb(proc.pid)
        proc.popen.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            with self.progress.follow(proc, self.who, self.names.get(port, "")):
                response = httpx.get(
                    f"http://127.0.0.1:{side_port}/prestop",
                    headers={"X-Prestop-Token": TOKEN},
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            body = response.json()
        except (httpx.HTTPError, ValueError):
            proc.kill()
            return 1
        self.overhead_s[port] = round(time.monotonic() - started - body.get("duration_s", 0), 3)
        self.summaries[port] = body
        self._mark_phases(port, body, time.monotonic())
        proc.wait(10)
        proc.kill()
        return 0 if response.status_code == 200 and body.get("exit_code") == 0 else 3

    def _sleep_script(self, port: int, deadline: float) -> int:
        # The script people paste: curl -X PUT (take out); sleep N; curl -X POST shutdown.
        self.lab.take_out_by_hand(port)
        sleep = max(0.0, min(self.lab.sleep_seconds(), deadline - time.monotonic()))
        self.mark(port, "take_out", say=f"taken out by hand; sleeping {sleep:.1f} s")
        time.sleep(sleep)
        self.mark(port, "drain_end")
        self.mark(port, "shutdown", say="shutdown POST")
        try:
            httpx.post(f"http://127.0.0.1:{port}/actuator/shutdown", timeout=3)
        except httpx.HTTPError:
            return 1
        return 0


def _monotonic_of(timestamp: object, default: float) -> float:
    """A log line's ISO UTC time on this process's monotonic clock; ``default`` if unreadable."""
    if not isinstance(timestamp, str):
        return default
    try:
        wall = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
    at = wall - (time.time() - time.monotonic())
    # A wall-clock step must not move the marks past the preStop's end or far before it.
    return at if default - 30.0 < at <= default else default


def run_rollout(
    settings: RolloutSettings, lab: LabRegistry | None = None, progress: Progress = QUIET
) -> RolloutResult:
    """One rolling update with one strategy; ``lab``: a registry already running, kept running."""
    if lab is None:
        with make_lab(settings) as own:
            return _rollout(settings, own, progress)
    return _rollout(settings, lab, progress)


def _rollout(settings: RolloutSettings, lab: LabRegistry, progress: Progress) -> RolloutResult:
    s = settings
    apps: dict[int, procs.Proc] = {}
    # A JVM registers a little after its health answers; a Python demo app at once.
    register_timeout = 60 if s.stack == "real" else 15
    consumers: Sequence[Load] = []
    sidecar_mode = s.mode == "sidecar" and s.strategy == "agent"
    name = f"{s.strategy}-sidecar" if sidecar_mode else s.strategy
    if sidecar_mode and s.startup == "hold":
        name = f"{name}-hold"
    if s.registry != "nacos":
        name = f"{name}-{s.registry}"
    kubelet = Kubelet(s, lab, progress, name)
    new_marks: list[tuple[str, int, str, float]] = []  # (pod, port, kind, monotonic)
    new_ports: list[int] = []
    try:
        # The first replicas start together, as a Deployment's do.
        progress.say(name, f"starting {s.replicas} replicas")
        ports = [procs.free_port() for _ in range(s.replicas)]
        kubelet.names = {port: f"old-{i}" for i, port in enumerate(ports, 1)}
        with ThreadPoolExecutor(max_workers=s.replicas) as pool:
            started_apps = {port: pool.submit(lab.start_app, port) for port in ports}
        failures = []
        for port, future in started_apps.items():
            try:
                apps[port] = future.result()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        if sidecar_mode:
            for port in ports:
                kubelet.start_sidecar(port)
        if not procs.wait_for(
            lambda: all(lab.registered(p) and kubelet.ready(p) for p in apps), register_timeout
        ):
            raise RuntimeError("replicas did not register")
        consumers = lab.consumers()
        # The load starts from the steady state: every consumer routes by every replica. A
        # fresh Eureka client's first fetch can come from a server cache older than the
        # replicas (up to cache + fetch + load-balancer cache), and a consumer with nothing to
        # route to would count errors the rollout did not cause.
        replicas = [f"127.0.0.1:{p}" for p in apps]
        if not procs.wait_for(
            lambda: all(c.routable_until(i) is not None for c in consumers for i in replicas),
            register_timeout + 60,
            interval=0.25,
        ):
            raise RuntimeError("the consumers never routed by every replica")
        for c in consumers:
            c.start()
        warm_up = max(1.5, s.scaled_lb_ttl / 4, s.steady_s)
        progress.say(
            name,
            f"{s.replicas} replicas registered; {len(consumers)} consumers sending "
            f"{s.rate:g} req/s; warming up {warm_up:.1f} s",
        )
        time.sleep(warm_up)
        started = time.monotonic()
        progress.say(name, "rollout started (t = 0 s in the report)")
        terminations: list[tuple[str, float, float | None, int | None, bool]] = []
        for step, old_port in enumerate(list(apps), 1):
            new_port = procs.free_port()
            pod = f"new-{step}"
            new_ports.append(new_port)
            new_marks.append((pod, new_port, "started", time.monotonic()))
            progress.say(name, f"{pod} starting")
            if sidecar_mode:
                # The pod's containers start together: the sidecar sees the registration.
                kubelet.start_sidecar(new_port)
            apps[new_port] = lab.start_app(new_port)
            procs.wait_for(
                lambda p=new_port: lab.registered(p) and kubelet.ready(p), register_timeout
            )
            new_marks.append((pod, new_port, "ready", time.monotonic()))
            progress.say(name, f"{pod} ready and registered")
            t0, drain, code, killed = kubelet.terminate(apps.pop(old_port), old_port)
            terminations.append((f"127.0.0.1:{old_port}", t0, drain, code, killed))
        rollout_s = time.monotonic() - started
        tail = max(1.0, s.steady_s)
        progress.say(name, f"rollout done in {rollout_s:.1f} s; consumers stop in {tail:g} s")
        time.sleep(tail)
        for c in consumers:
            c.stop()
        records = [r for c in consumers for r in c.records()]
    finally:
        # The pods left are stopped as kubelet would stop them, not killed: an app killed
        # outright leaves its Eureka lease behind, and the next rollout on the same servers
        # would send requests to it until the lease expires.
        for app in apps.values():
            if app.popen.poll() is None:
                app.popen.send_signal(signal.SIGTERM)
        for app in apps.values():
            if app.wait(30) is None:
                app.kill()
        for proc, _ in kubelet.sidecars.values():
            proc.kill()
    errors = [r for r in records if r.outcome != "ok"]
    by_kind: dict[str, int] = {}
    for r in errors:
        by_kind[r.outcome] = by_kind.get(r.outcome, 0) + 1
    result = RolloutResult(name, len(records), len(errors), by_kind, round(rollout_s, 3))
    result.started_at = started
    for instance, t0, drain, code, killed in terminations:
        bound = max(_bound(records, instance, t0), _routable_bound(consumers, instance, t0))
        bound += _app_stop(kubelet.marks.get(port_of(instance), []))
        result.pods.append(
            PodResult(
                instance=instance,
                drain_s=None if drain is None else round(drain, 3),
                bound_s=round(bound, 3),
                ratio=None if drain is None or bound <= 0 else round(drain / bound, 2),
                errors=sum(1 for r in errors if r.instance == instance),
                prestop_exit=code,
                killed=killed,
                prestop_summary=kubelet.summaries.get(port_of(instance), {}),
                sidecar_rss_mb=kubelet.rss_mb.get(port_of(instance)),
                hook_overhead_s=kubelet.overhead_s.get(port_of(instance)),
                pod=kubelet.names.get(port_of(instance), ""),
            )
        )
    marks = [(kubelet.names[p], p, kind, at) for p, ms in kubelet.marks.items() for kind, at in ms]
    result.events = [
        PodEvent(pod, f"127.0.0.1:{port}", kind, round(at - started, 3))
        for pod, port, kind, at in sorted(marks + new_marks, key=lambda m: m[3])
    ]
    result.records = records
    if s.steady_s > 0:
        result.start = start_latency(
            records,
            [i for i, *_ in terminations],
            [f"127.0.0.1:{p}" for p in new_ports],
            started,
            steady_from=started - s.steady_s / 2,
        )
    progress.say(name, f"{result.requests} requests, {result.errors} failed")
    return result


def port_of(instance: str) -> int:
    return int(instance.rsplit(":", 1)[1])


def heading(settings: RolloutSettings) -> str:
    """One line saying what was run: replicas, load, consumers' staleness, grace."""
    s = settings
    if s.stack == "real":
        server = "Eureka x2" if s.registry == "eureka" else f"Nacos {s.flavour}"
        consumers = (
            f"real stack ({server}): one Spring Cloud LoadBalancer consumer, cache "
            f"{s.scaled_lb_ttl:g} s"
        )
    elif s.registry == "eureka":
        consumers = (
            f"Eureka server cache {s.eureka_cache * s.time_scale:g} s, consumers fetch every "
            f"{s.eureka_fetch * s.time_scale:g} s + none / Ribbon {30 * s.time_scale:g} s / "
            f"LB cache {s.scaled_lb_ttl:g} s"
        )
    else:
        consumers = (
            f"consumers: push / poll every {s.scaled_poll:g} s / LB cache {s.scaled_lb_ttl:g} s"
        )
    return (
        f"rollout: {s.replicas} replicas, {s.rate:g} req/s, {consumers} "
        f"(time scale {s.time_scale:g}), tail {s.latency_tail:.0%} x {s.tail_ms:g} ms, "
        f"grace {s.grace:g} s"
    )


SHORT_KINDS = {"connect_refused": "refused", "connection_reset": "reset"}


def error_kinds(by_kind: dict[str, int]) -> str:
    """``{'connect_refused': 145, 'connection_reset': 1}`` as ``145 refused, 1 reset``."""
    ordered = sorted(by_kind.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{n} {SHORT_KINDS.get(k, k.replace('_', ' '))}" for k, n in ordered)


def render(results: list[RolloutResult], settings: RolloutSettings) -> str:
    lines = [
        heading(settings),
        "",
        f"{'strategy':<21}{'requests':>10}{'failed':>9}  {'drain / bound per pod':<36}"
        f"{'worst drain/bound':>18}{'rollout':>10}",
    ]
    for r in results:
        pods = ", ".join(
            f"{'-' if p.drain_s is None else f'{p.drain_s:.1f}'}/{p.bound_s:.1f}" for p in r.pods
        )
        pods += " s" if r.pods else ""
        worst = "-" if r.worst_ratio is None else f"{r.worst_ratio:.2f}"
        lines.append(
            f"{r.strategy:<21}{r.requests:>6} req{r.errors:>5} req  {pods:<36}{worst:>18}"
            f"{r.rollout_s:>8.1f} s"
        )
        if r.errors_by_kind:
            lines.append(f"{'':<21}failed: {error_kinds(r.errors_by_kind)}")
        rss = [p.sidecar_rss_mb for p in r.pods if p.sidecar_rss_mb is not None]
        overhead = [p.hook_overhead_s for p in r.pods if p.hook_overhead_s is not None]
        if r.start is not None:
            lines.append(f"{'':<21}{start_line(r.start)}")
        if rss:
            lines.append(
                f"{'':<21}sidecar idle RSS {min(rss):.1f}-{max(rss):.1f} MB, /prestop overhead "
                f"{min(overhead) * 1000:.0f}-{max(overhead) * 1000:.0f} ms"
            )
    return "\n".join(lines)


def start_line(st: StartLatency) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    ratio = "-" if st.p99_ratio is None else f"{st.p99_ratio:.2f}x"
    return (
        f"new pods' first {st.window_s:g} s: {st.new_requests} requests, {st.new_errors} failed, "
        f"p50/p99 {f(st.new_p50_ms)}/{f(st.new_p99_ms)} ms; steady p50/p99 "
        f"{f(st.steady_p50_ms)}/{f(st.steady_p99_ms)} ms; p99 {ratio} steady"
    )


def write_json(
    results: list[RolloutResult],
    settings: RolloutSettings,
    path: Path,
    report_files: Sequence[str] = (),
) -> None:
    """``report_files``: the report's pictures, named relative to the JSON file's directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_doc(results, settings, report_files), indent=2) + "\n")


def json_doc(
    results: list[RolloutResult], settings: RolloutSettings, report_files: Sequence[str] = ()
) -> dict[str, Any]:
    # One file for all the strategies run: the settings name them all, not the last one.
    common = {k: v for k, v in asdict(settings).items() if k != "strategy"}
    return {
        "settings": {**common, "strategies": [r.strategy for r in results]},
        "report": list(report_files),
        "results": [
            {
                **{k: v for k, v in asdict(r).items() if k not in ("records", "started_at")},
                "worst_ratio": r.worst_ratio,
                "pods": [asdict(p) for p in r.pods],
            }
            for r in results
        ],
    }
