"""Push delay on a real Nacos: how long after a take-out write do clients drop the instance.

``prestop lab push-delay --flavour 2.x|3.x`` starts a real Nacos server, two Python apps on the
official SDK (the target, weight 3 with metadata, and an anchor so no list is ever empty), a
Python SDK subscriber and the Spring Cloud consumer (LoadBalancer cache TTL 1 ms, so its
``choose()`` follows its Nacos client's cache). Then, per sample, it disables the target with
the agent's own write (2.x ``PATCH /v1/ns/instance``, 3.x ``PUT /v3/admin/ns/instance/partial``,
the current weight sent along), and measures from the write's answer to:

* ``sdk-push``: the SDK subscriber's listener called with a list without the target;
* ``spring-nacos-cache``: the consumer's ``/actuator/nacosdiscovery`` no longer listing it
  (polled every ``POLL_S``; shown only when the endpoint lists hosts);
* ``spring-choose``: the consumer's last request sent to the target (its records; the consumer
  sends ``RATE`` req/s, half to the target, so this has a resolution of ~2/RATE s).

and the same on the way back in (enable). All times are CLOCK_MONOTONIC across processes.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from prestop_lab import procs
from prestop_lab.real import NACOS_USER, SERVICE, JavaConsumer, NacosServer, registry_args
from prestop_lab.sdk_app import READY, SUBSCRIBED

POLL_S = 0.02
RATE = 50.0
PUSH_TIMEOUT = 30.0


def start_sdk_app(
    server: NacosServer,
    port: int,
    weight: float,
    metadata: dict[str, str],
    service: str = SERVICE,
) -> procs.Proc:
    """``prestop_lab.sdk_app serve`` on ``port``, registered once it prints its ready line."""
    argv = procs.python_module(
        "prestop_lab.sdk_app",
        "serve",
        "--server-addr",
        server.addr,
        "--username",
        NACOS_USER,
        "--password",
        server.password,
        "--service",
        service,
        "--port",
        str(port),
        "--weight",
        f"{weight:g}",
        "--metadata",
        json.dumps(metadata),
    )
    proc = procs.start(f"sdk-app-{port}", argv, ready_marker=READY)
    proc.wait_ready(60)
    return proc


@dataclass(frozen=True)
class Push:
    t: float  # time.time() on arrival
    mono: float  # time.monotonic() on arrival
    hosts: list[dict[str, Any]]

    def has(self, port: int) -> bool:
        return any(h["port"] == port for h in self.hosts)


class SdkSubscriber:
    """``prestop_lab.sdk_app subscribe``: every push, stamped on arrival."""

    def __init__(self, server: NacosServer, service: str = SERVICE) -> None:
        argv = procs.python_module(
            "prestop_lab.sdk_app",
            "subscribe",
            "--server-addr",
            server.addr,
            "--username",
            NACOS_USER,
            "--password",
            server.password,
            "--service",
            service,
        )
        self.proc = procs.start("sdk-subscriber", argv, ready_marker=SUBSCRIBED)
        self.proc.wait_ready(60)

    def pushes(self) -> list[Push]:
        out = []
        for line in list(self.proc.lines):
            if line.startswith('{"t"'):
                body = json.loads(line)
                out.append(Push(float(body["t"]), float(body["mono"]), list(body["hosts"])))
        return out

    def wait_push(self, after: float, want_port: int, present: bool, timeout: float) -> Push:
        """The first push received after ``after`` whose list has (or lacks) ``want_port``."""
        end = time.monotonic() + timeout
        while True:
            for push in self.pushes():
                if push.mono >= after and push.has(want_port) is present:
                    return push
            if time.monotonic() > end:
                raise TimeoutError(
                    f"no SDK push {'with' if present else 'without'} port {want_port} "
                    f"within {timeout:g}s; pushes: {self.pushes()[-3:]}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.popen.poll() is None:
            self.proc.popen.terminate()
            if self.proc.wait(10) is None:
                self.proc.kill()


def admin_instance(server: NacosServer, port: int, service: str = SERVICE) -> dict[str, Any] | None:
    """The instance as an admin sees it, disabled or not (consumers' lists leave it out)."""
    headers = {"accessToken": server.token()}
    if server.flavour == "2.x":
        url = f"{server.url}/v1/ns/catalog/instances"
        params: dict[str, str | int] = {
            "serviceName": service,
            "clusterName": "DEFAULT",
            "pageNo": 1,
            "pageSize": 100,
        }
        key = "list"
    else:
        url, params, key = (
            f"{server.url}/v3/admin/ns/instance/list",
            {"serviceName": service},
            "data",
        )
    try:
        body = httpx.get(url, params=params, headers=headers, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    hosts = body.get(key) if isinstance(body, dict) else body
    for host in hosts if isinstance(hosts, list) else []:
        if host.get("ip") == "127.0.0.1" and host.get("port") == port:
            return dict(host)
    return None


def set_enabled(
    server: NacosServer, port: int, enabled: bool, weight: float, service: str = SERVICE
) -> float:
    """The agent's write (current weight sent along); returns when it was answered."""
    params: dict[str, Any] = {
        "serviceName": service,
        "ip": "127.0.0.1",
        "port": port,
        "clusterName": "DEFAULT",
        "enabled": "true" if enabled else "false",
        "weight": weight,
    }
    headers = {"accessToken": server.token()}
    if server.flavour == "2.x":
        r = httpx.patch(f"{server.url}/v1/ns/instance", params=params, headers=headers, timeout=10)
    else:
        params["ephemeral"] = "true"
        url = f"{server.url}/v3/admin/ns/instance/partial"
        r = httpx.put(url, params=params, headers=headers, timeout=10)
    answered = time.monotonic()
    if r.status_code != 200:
        raise RuntimeError(f"set enabled={enabled}: HTTP {r.status_code} {r.text[:200]}")
    return answered


class DiscoveryPoller:
    """Polls the consumer's /actuator/nacosdiscovery; keeps (time, lists target?) changes."""

    def __init__(self, consumer: JavaConsumer, port: int) -> None:
        self.url = f"{consumer.url}/actuator/nacosdiscovery"
        self.port = port
        self.changes: list[tuple[float, bool]] = []
        self.saw_hosts = False
        self.body_subscribe: Any = None  # the endpoint's "subscribe", as last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="discovery-poller", daemon=True)

    def start(self) -> DiscoveryPoller:
        self._thread.start()
        return self

    def _holds(self, body: Any) -> bool:
        if isinstance(body, dict):
            self.body_subscribe = body.get("subscribe")
        for info in body.get("subscribe") or [] if isinstance(body, dict) else []:
            if str(info.get("name", "")).split("@@")[-1] != SERVICE:
                continue
            hosts = info.get("hosts") or []
            if hosts:
                self.saw_hosts = True
            return any(int(h.get("port", 0)) == self.port for h in hosts)
        return False

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    holds = self._holds(client.get(self.url).json())
                    now = time.monotonic()
                    if not self.changes or self.changes[-1][1] != holds:
                        self.changes.append((now, holds))
                self._stop.wait(POLL_S)

    def first(self, after: float, holds: bool) -> float | None:
        for t, h in self.changes:
            if t >= after and h is holds:
                return t
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Samples:
    ms: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, client: str, ms: float) -> None:
        self.ms.setdefault(client, []).append(round(ms, 1))


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def summarize(samples: Samples) -> dict[str, dict[str, float]]:
    return {
        client: {
            "n": len(v),
            "min": min(v),
            "median": statistics.median(v),
            "p90": _p90(v),
            "max": max(v),
        }
        for client, v in samples.ms.items()
        if v
    }


def run_push_delay(flavour: Literal["2.x", "3.x"], samples: int) -> dict[str, Any]:
    out = Samples()
    target, anchor = procs.free_port(), procs.free_port()
    weight, metadata = 3.0, {"zone": "lab", "version": "7"}
    apps: list[procs.Proc] = []
    consumer: JavaConsumer | None = None
    subscriber: SdkSubscriber | None = None
    poller: DiscoveryPoller | None = None
    with NacosServer(flavour) as server:
        try:
            apps.append(start_sdk_app(server, target, weight, metadata))
            apps.append(start_sdk_app(server, anchor, 1.0, {"role": "anchor"}))
            subscriber = SdkSubscriber(server)
            consumer = JavaConsumer(
                registry_args(server, 30, 5), rate=RATE, lb_cache_ttl_s=0.001
            ).launch()
            consumer.start()  # its first choose() subscribes its Nacos client
            poller = DiscoveryPoller(consumer, target).start()
            subscriber.wait_push(0, target, True, PUSH_TIMEOUT)
            chooser = ChoiceLog(consumer, f"127.0.0.1:{target}")
            procs.wait_for(lambda: chooser.first_to_target(0.0) is not None, 60, 0.1)
            # The endpoint lists a service only while its Nacos client has a listener on it.
            if not procs.wait_for(lambda: poller is not None and poller.saw_hosts, 10, 0.1):
                out.notes.append(
                    "/actuator/nacosdiscovery listed no hosts for the service (spring-nacos-cache "
                    f"n/a); its 'subscribe': {json.dumps(poller.body_subscribe)[:200]}"
                )
                poller.stop()
                poller = None
            for _ in range(samples):
                for enabled in (False, True):
                    _one(server, target, weight, enabled, subscriber, chooser, poller, out)
            version = server.flavour
            started_s = server.started_s
        finally:
            if poller is not None:
                poller.stop()
            if consumer is not None:
                consumer.kill()
            if subscriber is not None:
                subscriber.stop()
            for app in apps:
                app.popen.terminate()
                if app.wait(10) is None:
                    app.kill()
    return {
        "flavour": version,
        "server_start_s": round(started_s, 1),
        "samples": samples,
        "consumer_rate": RATE,
        "poll_ms": POLL_S * 1000,
        "summary": summarize(out),
        "delays_ms": out.ms,
        "notes": out.notes,
    }


class ChoiceLog:
    """The consumer's records, fetched incrementally: which instance ``choose()`` gave when."""

    def __init__(self, consumer: JavaConsumer, target: str) -> None:
        self.url = f"{consumer.url}/lab/records"
        self.target = target
        self.after = 0
        self.starts: list[tuple[float, str]] = []  # (monotonic start, "ip:port")
        self._offset = time.time() - time.monotonic()  # Java stamps with the wall clock

    def fetch(self) -> None:
        while True:
            body = httpx.get(self.url, params={"after": self.after}, timeout=30).json()
            for _seq, start_ms, _end_ms, instance, _outcome in body["records"]:
                self.starts.append((start_ms / 1000 - self._offset, str(instance or "-")))
            if not body["records"] or body["next"] == self.after:
                return
            self.after = body["next"]

    def first_to_target(self, after: float) -> float | None:
        self.fetch()
        return next((t for t, i in self.starts if t >= after and i == self.target), None)

    def left_target(self, after: float, others: int = 10) -> float | None:
        """The last request to the target, once ``others`` later ones went elsewhere."""
        self.fetch()
        last = max((t for t, i in self.starts if i == self.target), default=None)
        later = [t for t, i in self.starts if t >= after and (last is None or t > last)]
        if len(later) < others:
            return None
        return last if last is not None else after


def _one(
    server: NacosServer,
    target: int,
    weight: float,
    enabled: bool,
    subscriber: SdkSubscriber,
    chooser: ChoiceLog,
    poller: DiscoveryPoller | None,
    out: Samples,
) -> None:
    way = "in" if enabled else "out"
    before = time.monotonic()
    answered = set_enabled(server, target, enabled, weight)
    push = subscriber.wait_push(before, target, enabled, PUSH_TIMEOUT)
    out.add(f"sdk-push ({way})", (push.mono - answered) * 1000)
    if poller is not None:
        procs.wait_for(lambda: poller.first(before, enabled) is not None, PUSH_TIMEOUT, 0.02)
        seen = poller.first(before, enabled)
        if seen is not None:
            out.add(f"spring-nacos-cache ({way})", (seen - answered) * 1000)
    found: list[float] = []

    def chosen() -> bool:
        t = chooser.first_to_target(before) if enabled else chooser.left_target(before)
        if t is not None:
            found.append(t)
        return t is not None

    if procs.wait_for(chosen, PUSH_TIMEOUT, 0.1):
        # Out: a last request before the write counts as 0 (it let go no later than that).
        out.add(f"spring-choose ({way})", max(0.0, found[-1] - answered) * 1000)
    else:
        out.notes.append(f"spring-choose ({way}): no change seen within {PUSH_TIMEOUT:g}s")


def render(result: dict[str, Any]) -> str:
    lines = [
        f"push delay on real Nacos {result['flavour']} ({result['samples']} samples; "
        f"write answered -> client view, ms)",
        f"{'client':<28}{'n':>4}{'min':>9}{'median':>9}{'p90':>9}{'max':>9}",
    ]
    for client, s in sorted(result["summary"].items()):
        lines.append(
            f"{client:<28}{s['n']:>4}{s['min']:>9.1f}{s['median']:>9.1f}{s['p90']:>9.1f}"
            f"{s['max']:>9.1f}"
        )
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
