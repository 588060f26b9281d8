"""The real stack on loopback: Nacos 2.x/3.x or two Eureka peers, Spring Cloud apps.

Every part is a real process built by ``lab/java/build.sh``: a Nacos server (standalone,
embedded Derby, auth on) or two Eureka servers replicating to each other; providers that
register the way users' apps do (Spring Cloud Alibaba over gRPC, or the Eureka client) and stop
with Tomcat's graceful shutdown; and a consumer that routes through Spring Cloud LoadBalancer's
cached instance list and records every request.
"""

from __future__ import annotations

import base64
import contextlib
import random
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from prestop_lab import procs
from prestop_lab.consumer import Record
from prestop_lab.java import java_argv
from prestop_lab.rollout import eureka_agent_env

if TYPE_CHECKING:
    from prestop_lab.rollout import RolloutSettings

SERVICE = "provider"
NACOS_USER = "nacos"
LAB_PASSWORD = "lab-only-Passw0rd"  # 3.x: set at start; 2.x ships nacos/nacos
START_TIMEOUT = 240.0  # a JVM on a busy 2-core machine


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def nacos_port() -> int:
    """A main port whose companions are free too: Raft (-1000) and gRPC (+1000, +1001).

    Drawn below the kernel's ephemeral range (32768+) so that client sockets cannot take one of
    them between this check and the server's bind.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(21000, 30000)
        if all(_free(p) for p in (port, port - 1000, port + 1000, port + 1001)):
            return port
    raise RuntimeError("no free Nacos port quadruple on loopback")


def http_ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(what: str, predicate: Any, timeout: float, proc: procs.Proc | None = None) -> None:
    """Poll until ``predicate()``; fail with the process's last lines if it died or timed out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.popen.poll() is not None:
            break
        time.sleep(0.2)
    tail = "\n".join(proc.lines[-30:]) if proc is not None else ""
    state = "exited" if proc is not None and proc.popen.poll() is not None else "timed out"
    raise RuntimeError(f"{what}: {state} after {timeout:g}s\n{tail}")


class NacosServer:
    """A real Nacos server, standalone with embedded Derby and auth on, on loopback."""

    def __init__(self, flavour: Literal["2.x", "3.x"]) -> None:
        self.flavour = flavour
        self.port = 0
        self.password = "nacos" if flavour == "2.x" else LAB_PASSWORD
        self.home = Path(tempfile.mkdtemp(prefix=f"prestop-nacos-{flavour}-"))
        self.proc: procs.Proc | None = None
        self.started_s = 0.0
        self._token: tuple[str, float] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/nacos"

    def _argv(self) -> list[str]:
        module = "nacos-2x" if self.flavour == "2.x" else "nacos-3x"
        secret = base64.b64encode(secrets.token_bytes(48)).decode()
        sysprops = {
            "nacos.home": str(self.home),
            "nacos.standalone": "true",
            "nacos.inetutils.ip-address": "127.0.0.1",
        }
        args = [
            "--server.address=127.0.0.1",
            "--nacos.core.auth.enabled=true",
            f"--nacos.core.auth.plugin.nacos.token.secret.key={secret}",
            "--nacos.core.auth.server.identity.key=prestop-lab",
            f"--nacos.core.auth.server.identity.value={secrets.token_hex(8)}",
        ]
        if self.flavour == "2.x":
            args.append(f"--server.port={self.port}")
        else:
            sysprops["nacos.remote.grpc.listen.ip"] = "127.0.0.1"
            console = procs.free_port()
            args += [f"--nacos.server.main.port={self.port}", f"--nacos.console.port={console}"]
        return java_argv(module, *args, heap_mb=384, sysprops=sysprops)

    def start(self, attempts: int = 2) -> NacosServer:
        """Start and wait until a login works; a start that died of Derby's boot timeout is
        tried again (on a loaded 2-core machine the embedded Derby sometimes misses the
        connection pool's login timeout and Nacos exits: ``Login timeout exceeded``)."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except RuntimeError as exc:
                self.stop()
                if "Login timeout exceeded" not in str(exc) or attempt == attempts:
                    raise
                self.home = Path(tempfile.mkdtemp(prefix=f"prestop-nacos-{self.flavour}-"))
        raise AssertionError("unreachable")

    def _start_once(self) -> NacosServer:
        self.port = nacos_port()
        t0 = time.monotonic()
        self.proc = procs.start(f"nacos-{self.flavour}", self._argv(), cwd=self.home)
        state = "/v1/console/server/state" if self.flavour == "2.x" else "/v3/admin/core/state"
        wait_until(
            f"nacos {self.flavour} state",
            lambda: http_ok(self.url + state),
            START_TIMEOUT,
            self.proc,
        )
        if self.flavour == "3.x":
            # 3.x ships no admin password: the first call sets it.
            r = httpx.post(
                f"{self.url}/v3/auth/user/admin", data={"password": self.password}, timeout=10
            )
            if r.status_code != 200:
                raise RuntimeError(f"nacos 3.x admin init: {r.status_code} {r.text[:200]}")
        # The auth plugin loads users on a timer: a fresh server refuses the login for a while.
        wait_until("nacos login", lambda: self._login() is not None, 60, self.proc)
        self.started_s = time.monotonic() - t0
        return self

    def _login(self) -> str | None:
        try:
            r = httpx.post(
                f"{self.url}/v1/auth/users/login",
                data={"username": NACOS_USER, "password": self.password},
                timeout=5,
            )
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        token = str(r.json()["accessToken"])
        self._token = (token, time.monotonic())
        return token

    def token(self) -> str:
        stale = self._token is None or time.monotonic() - self._token[1] > 600
        if stale and self._login() is None:
            raise RuntimeError("nacos login failed")
        assert self._token is not None
        return self._token[0]

    def consumer_view(self, service: str = SERVICE) -> list[dict[str, Any]]:
        """The healthy, enabled instances consumers are given (the list the agent confirms on)."""
        headers = {"accessToken": self.token()}
        if self.flavour == "2.x":
            url, params = f"{self.url}/v1/ns/instance/list", {"serviceName": service}
            key = "hosts"
        else:
            url = f"{self.url}/v3/client/ns/instance/list"
            params, key = {"serviceName": service}, "data"
        try:
            body = httpx.get(url, params=params, headers=headers, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return []
        hosts = body.get(key) if isinstance(body, dict) else None
        if not isinstance(hosts, list):
            return []
        return [h for h in hosts if h.get("enabled", True) and h.get("healthy", True)]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> NacosServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EurekaPeers:
    """Two real Eureka servers replicating to each other, with time-scaled caches."""

    def __init__(self, cache_interval_s: float = 30.0) -> None:
        self.cache_interval_s = cache_interval_s
        self.ports: list[int] = []
        self.procs: list[procs.Proc] = []
        self.started_s = 0.0

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/eureka/" for p in self.ports]

    def start(self) -> EurekaPeers:
        self.ports = [procs.free_port(), procs.free_port()]
        t0 = time.monotonic()
        for i, port in enumerate(self.ports):
            other = self.ports[1 - i]
            argv = java_argv(
                "eureka-server",
                f"--server.port={port}",
                f"--eureka.client.service-url.defaultZone=http://127.0.0.1:{other}/eureka/",
                f"--eureka.server.response-cache-update-interval-ms="
                f"{max(1000, int(self.cache_interval_s * 1000))}",
                "--eureka.server.enable-self-preservation=false",
                heap_mb=192,
            )
            self.procs.append(procs.start(f"eureka-{port}", argv))
        for url, proc in zip(self.urls, self.procs, strict=True):
            wait_until(
                f"eureka {url}",
                lambda u=url: http_ok(u + "apps", headers={"Accept": "application/json"}),
                START_TIMEOUT,
                proc,
            )
        self.started_s = time.monotonic() - t0
        return self

    def instance(self, app: str, instance_id: str, peer: int = 0) -> dict[str, Any] | None:
        url = f"{self.urls[peer]}apps/{app.upper()}/{instance_id}"
        try:
            r = httpx.get(url, headers={"Accept": "application/json"}, timeout=3)
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        instance = r.json().get("instance")
        return instance if isinstance(instance, dict) else None

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()

    def __enter__(self) -> EurekaPeers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def registry_args(registry: NacosServer | EurekaPeers, fetch_s: int, renewal_s: int) -> list[str]:
    """The Spring properties that point an app at the lab's registry."""
    if isinstance(registry, NacosServer):
        return [
            "--spring.profiles.active=nacos",
            f"--spring.cloud.nacos.discovery.server-addr={registry.addr}",
            f"--spring.cloud.nacos.discovery.username={NACOS_USER}",
            f"--spring.cloud.nacos.discovery.password={registry.password}",
            # Spring Cloud Alibaba 2025 deregisters and then sleeps 10 s on a context close
            # (an actuator shutdown; on SIGTERM it fails with an NPE and skips the sleep). The
            # strategies decide how long to wait, so the app's own wait is off for all of them.
            "--spring.cloud.nacos.discovery.graceful-shutdown-wait-time=0",
        ]
    return [
        "--spring.profiles.active=eureka",
        f"--eureka.client.service-url.defaultZone={','.join(registry.urls)}",
        f"--eureka.client.registry-fetch-interval-seconds={fetch_s}",
        f"--eureka.instance.lease-renewal-interval-in-seconds={renewal_s}",
        f"--eureka.instance.lease-expiration-duration-in-seconds={3 * renewal_s}",
    ]


def start_provider(port: int, registry_argv: list[str], *extra: str) -> procs.Proc:
    """A Spring Boot provider on ``port``, ready when its actuator health answers UP."""
    argv = java_argv("provider", f"--server.port={port}", *registry_argv, *extra, heap_mb=160)
    proc = procs.start(f"provider-{port}", argv)
    wait_until(
        f"provider {port} health",
        lambda: http_ok(f"http://127.0.0.1:{port}/actuator/health"),
        START_TIMEOUT,
        proc,
    )
    return proc


# The consumer's error kinds, in the names the Python lab uses.
_KINDS = {"refused": "connect_refused", "reset": "connection_reset", "status_5xx": "http_5xx"}


@dataclass
class JavaConsumer:
    """The Spring Cloud consumer process; its records are read over HTTP."""

    registry_argv: list[str]
    rate: float
    lb_cache_ttl_s: float
    latency_ms: float = 20.0
    tail_probability: float = 0.0
    tail_ms: float = 2000.0
    name: str = "spring-lb"
    port: int = 0  # 0: a free port
    # False: the actuator exposes neither caches nor nacosdiscovery (an app that never opted in).
    expose_endpoints: bool = True

    def __post_init__(self) -> None:
        self.port = self.port or procs.free_port()
        self.proc: procs.Proc | None = None
        # Java stamps records with the wall clock; the rollout measures with the monotonic one.
        self._offset = time.time() - time.monotonic()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> JavaConsumer:
        """Start the process with no load; ``start()`` turns the load on."""
        argv = java_argv(
            "consumer",
            f"--server.port={self.port}",
            *self.registry_argv,
            f"--spring.cloud.loadbalancer.cache.ttl={int(self.lb_cache_ttl_s * 1000)}ms",
            "--lab.rate=0",
            f"--lab.latency-ms={self.latency_ms:g}",
            f"--lab.tail-probability={self.tail_probability:g}",
            f"--lab.tail-ms={self.tail_ms:g}",
            f"--lab.timeout-ms={int(max(30_000, 3 * self.tail_ms))}",
            *(
                []
                if self.expose_endpoints
                else ["--management.endpoints.web.exposure.include=health"]
            ),
            heap_mb=192,
            # The Nacos client reports its own IP to the server (Nacos lists subscribers by
            # it); by default the first non-loopback address, where this loopback-bound
            # consumer cannot be reached. In a pod both are the pod IP.
            sysprops={"com.alibaba.nacos.client.local.ip": "127.0.0.1"},
        )
        self.proc = procs.start(f"consumer-{self.port}", argv)
        wait_until(
            "consumer health",
            lambda: http_ok(f"{self.url}/actuator/health"),
            START_TIMEOUT,
            self.proc,
        )
        return self

    def _set_rate(self, rate: float) -> None:
        httpx.post(f"{self.url}/lab/load", params={"rate": f"{rate:g}"}, timeout=10)

    def start(self) -> None:
        self._set_rate(self.rate)

    def stop(self) -> None:
        """Stop sending; requests already sent finish and are recorded."""
        with contextlib.suppress(httpx.HTTPError):
            self._set_rate(0)
        end = time.monotonic() + max(10.0, 2 * self.tail_ms / 1000)
        while time.monotonic() < end:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                stats = httpx.get(f"{self.url}/lab/stats", timeout=5).json()
                if int(stats.get("inFlight", stats.get("in_flight", 0))) == 0:
                    break
            time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        """Totals in the shape of the Python consumer's ``stats()``."""
        records = self.records()
        ok = sum(1 for r in records if r.outcome == "ok")
        errors: dict[str, int] = {}
        per_instance: dict[str, int] = {}
        for r in records:
            per_instance[r.instance] = per_instance.get(r.instance, 0) + 1
            if r.outcome != "ok":
                errors[r.outcome] = errors.get(r.outcome, 0) + 1
        return {
            "total": len(records),
            "ok": ok,
            "errors": len(records) - ok,
            "errors_by_kind": errors,
            "per_instance": per_instance,
        }

    def records(self) -> list[Record]:
        out: list[Record] = []
        after = 0
        while True:
            body = httpx.get(f"{self.url}/lab/records", params={"after": after}, timeout=30).json()
            for _seq, start_ms, end_ms, instance, outcome in body["records"]:
                out.append(
                    Record(
                        start_ms / 1000 - self._offset,
                        end_ms / 1000 - self._offset,
                        instance or "-",
                        _KINDS.get(outcome, outcome),
                    )
                )
            if not body["records"] or body["next"] == after:
                return out
            after = body["next"]

    def routable_until(self, instance: str) -> float | None:
        """When ``instance`` (``ip:port``) was last in the list the load balancer routes by
        (the consumer samples its cache entry every 50 ms), on this process's monotonic clock;
        None if never."""
        body = httpx.get(f"{self.url}/lab/routable", timeout=10).json()
        ms = body.get("instances", {}).get(instance)
        return None if ms is None else float(ms) / 1000 - self._offset

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def nacos_agent_env(server: NacosServer, port: int, budget: float) -> dict[str, str]:
    """The agent's environment for a lab pod registered in the real Nacos (auth on)."""
    return {
        "PRESTOP_NACOS_ADDR": server.addr,
        "PRESTOP_SERVICE": SERVICE,
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_BUDGET": str(budget),
        "PRESTOP_USERNAME": NACOS_USER,
        "PRESTOP_PASSWORD": server.password,
        "PRESTOP_LOG_FORMAT": "json",
        "PRESTOP_LOG_TO_PID1": "false",
    }


def new_consumer(
    s: RolloutSettings, registry_argv: list[str], owned: list[JavaConsumer], port: int = 0
) -> list[JavaConsumer]:
    """A fresh consumer process for one rollout; the previous rollout's is stopped first.

    ``consumer_endpoints="all-but-one"``: the one consumer there is exposes no caches endpoint.
    """
    while owned:
        owned.pop().kill()
    consumer = JavaConsumer(
        registry_argv,
        rate=s.rate,
        lb_cache_ttl_s=s.scaled_lb_ttl,
        latency_ms=s.latency_ms,
        tail_probability=s.latency_tail,
        tail_ms=s.tail_ms,
        port=port,
        expose_endpoints=s.consumer_endpoints != "all-but-one",
    )
    owned.append(consumer)
    return [consumer.launch()]


class RealNacosLab:
    """The rollout's registry side on the real stack: a Nacos server and Spring Cloud apps."""

    name = "nacos"

    def __init__(self, s: RolloutSettings, server: NacosServer | None = None) -> None:
        """``server``: one already running (tests share it), left running on exit."""
        self.s = s
        self._owns_server = server is None
        self.server = server or NacosServer("3.x" if s.flavour == "3.x" else "2.x")
        self._consumers: list[JavaConsumer] = []
        # Known before the consumer starts: sidecars get the actuator address at their start.
        self.consumer_port = procs.free_port()

    def __enter__(self) -> RealNacosLab:
        if self._owns_server:
            self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self._consumers:
            c.kill()
        if self._owns_server:
            self.server.stop()

    def registry_argv(self) -> list[str]:
        return registry_args(self.server, fetch_s=30, renewal_s=5)

    def start_app(self, port: int, *extra: str) -> procs.Proc:
        cold = f"--lab.cold-cache-entries={self.s.cold_cache_entries}"
        return start_provider(port, self.registry_argv(), cold, *extra)

    def registered(self, port: int) -> bool:
        return any(h.get("port") == port for h in self.server.consumer_view())

    def agent_env(self, port: int, budget: float) -> dict[str, str]:
        return nacos_agent_env(self.server, port, budget)

    def consumer_actuator(self) -> str | None:
        # A gRPC subscriber is listed with port 0: the consumer's own port is given.
        return f"http://{{ip}}:{self.consumer_port}/actuator"

    def take_out_by_hand(self, port: int) -> None:
        # The script people paste: one curl that disables the instance (weight not sent).
        params = {"serviceName": SERVICE, "ip": "127.0.0.1", "port": str(port), "enabled": "false"}
        path = (
            "/v1/ns/instance" if self.server.flavour == "2.x" else "/v3/admin/ns/instance/partial"
        )
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            headers = {"accessToken": self.server.token()}
            httpx.put(self.server.url + path, params=params, headers=headers, timeout=3)

    def sleep_seconds(self) -> float:
        # The load-balancer cache plus the push and a margin.
        return self.s.scaled_lb_ttl + 3.0

    def consumers(self) -> list[JavaConsumer]:
        return new_consumer(self.s, self.registry_argv(), self._consumers, self.consumer_port)


class RealEurekaLab:
    """Two real Eureka peers (time-scaled caches) and Spring Cloud apps."""

    name = "eureka"

    def __init__(self, s: RolloutSettings, peers: EurekaPeers | None = None) -> None:
        """``peers``: already running (tests share them), left running on exit."""
        self.s = s
        self._owns_peers = peers is None
        self.peers = peers or EurekaPeers(cache_interval_s=s.eureka_cache * s.time_scale)
        self._consumers: list[JavaConsumer] = []

    @property
    def fetch_s(self) -> int:
        # Spring's Eureka client takes whole seconds.
        return max(1, round(self.s.eureka_fetch * self.s.time_scale))

    def __enter__(self) -> RealEurekaLab:
        if self._owns_peers:
            self.peers.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for c in self._consumers:
            c.kill()
        if self._owns_peers:
            self.peers.stop()

    def registry_argv(self) -> list[str]:
        return registry_args(self.peers, fetch_s=self.fetch_s, renewal_s=self.fetch_s)

    @staticmethod
    def instance_id(port: int) -> str:
        return f"127.0.0.1:{SERVICE}:{port}"

    def start_app(self, port: int, *extra: str) -> procs.Proc:
        cold = f"--lab.cold-cache-entries={self.s.cold_cache_entries}"
        return start_provider(port, self.registry_argv(), cold, *extra)

    def registered(self, port: int) -> bool:
        instance = self.peers.instance(SERVICE, self.instance_id(port))
        return instance is not None and instance.get("status") == "UP"

    def agent_env(self, port: int, budget: float) -> dict[str, str]:
        urls = ",".join(self.peers.urls)
        return eureka_agent_env(urls, SERVICE, port, budget, self.s.time_scale)

    def consumer_actuator(self) -> str | None:
        return None  # Eureka lists no subscribers

    def take_out_by_hand(self, port: int) -> None:
        url = f"{self.peers.urls[0]}apps/{SERVICE.upper()}/{self.instance_id(port)}/status"
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(url, params={"value": "OUT_OF_SERVICE"}, timeout=3)

    def sleep_seconds(self) -> float:
        # Server cache tick + client fetch + load-balancer cache, and a margin.
        return self.peers.cache_interval_s + self.fetch_s + self.s.scaled_lb_ttl + 2.0

    def consumers(self) -> list[JavaConsumer]:
        return new_consumer(self.s, self.registry_argv(), self._consumers)
