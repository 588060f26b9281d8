"""Eureka clients for the lab, behaving like Spring Cloud Netflix's (time-scalable).

* :class:`EurekaInstance`: what a Spring Boot app's ``DiscoveryClient`` does for its own
  instance: register (204), heartbeat every ``renewal_interval`` (re-register on 404), and on
  shutdown register ``DOWN`` then cancel the lease (SCN ``EurekaAutoServiceRegistration.stop``,
  NE ``DiscoveryClient.shutdown``).
* :class:`EurekaFetcher`: a consumer's registry cache: a full ``GET apps`` first, then
  ``GET apps/delta`` every ``fetch_interval``, applying ADDED/MODIFIED as upsert and DELETED as
  removal, and falling back to a full fetch when the reconcile hash code differs (NE
  ``DiscoveryClient.getAndUpdateDelta``); lookups keep only ``UP`` instances
  (``shouldFilterOnlyUpInstances``, default true).

Both speak JSON (``Accept: application/json``), like the Java clients.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

JSON = {"Accept": "application/json"}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _instances(body: Any) -> list[dict[str, Any]]:
    apps = _as_list(((body or {}).get("applications") or {}).get("application"))
    return [i for a in apps if isinstance(a, dict) for i in _as_list(a.get("instance"))]


def _port(value: Any) -> int:
    return int(str(value.get("$") if isinstance(value, dict) else value))


class EurekaInstance:
    """One app instance's registration and heartbeats."""

    def __init__(
        self,
        base_url: str,
        app: str,
        ip: str,
        port: int,
        *,
        hostname: str | None = None,
        renewal_interval: float = 30.0,
        lease_duration: float = 90.0,
    ) -> None:
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.app = app.upper()
        self.hostname = hostname or f"pod-{port}"
        # Spring Cloud's default instance id: hostname:spring.application.name:port.
        self.instance_id = f"{self.hostname}:{app}:{port}"
        self.ip, self.port = ip, port
        self.renewal_interval = renewal_interval
        self.lease_duration = lease_duration
        self._http = httpx.Client(timeout=5.0, headers=JSON, trust_env=False)
        self._stop = threading.Event()
        self._dirty = int(time.time() * 1000)

    def body(self, status: str) -> dict[str, Any]:
        return {
            "instance": {
                "instanceId": self.instance_id,
                "hostName": self.hostname,
                "app": self.app,
                "ipAddr": self.ip,
                "status": status,
                "overriddenStatus": "UNKNOWN",
                "port": {"$": self.port, "@enabled": "true"},
                "securePort": {"$": 443, "@enabled": "false"},
                "countryId": 1,
                "dataCenterInfo": {
                    "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                    "name": "MyOwn",
                },
                "leaseInfo": {
                    "renewalIntervalInSecs": max(1, round(self.renewal_interval)),
                    "durationInSecs": max(1, round(self.lease_duration)),
                },
                "metadata": {"management.port": str(self.port)},
                "homePageUrl": f"http://{self.hostname}:{self.port}/",
                "statusPageUrl": f"http://{self.hostname}:{self.port}/actuator/info",
                "healthCheckUrl": f"http://{self.hostname}:{self.port}/actuator/health",
                "vipAddress": self.app.lower(),
                "secureVipAddress": self.app.lower(),
                "isCoordinatingDiscoveryServer": "false",
                "lastDirtyTimestamp": str(self._dirty),
            }
        }

    def register(self, status: str = "UP") -> None:
        r = self._http.post(f"{self.base}apps/{self.app}", json=self.body(status))
        if r.status_code != 204:
            raise RuntimeError(f"register -> {r.status_code}: {r.text[:200]}")

    def start(self) -> None:
        self.register()
        threading.Thread(target=self._heartbeats, daemon=True).start()

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.renewal_interval):
            try:
                r = self._http.put(
                    f"{self.base}apps/{self.app}/{self.instance_id}",
                    params={"status": "UP", "lastDirtyTimestamp": str(self._dirty)},
                )
                if r.status_code == 404:
                    # The server asks for a re-registration (unknown lease or UNKNOWN status);
                    # the client marks itself dirty first so that its registration wins.
                    self._dirty = int(time.time() * 1000)
                    self.register()
            except (httpx.HTTPError, RuntimeError):
                continue

    def stop(self) -> None:
        """Spring's shutdown: status DOWN (a re-registration), then cancel the lease."""
        self._stop.set()
        for call in (
            lambda: self.register("DOWN"),
            lambda: self._http.delete(f"{self.base}apps/{self.app}/{self.instance_id}"),
        ):
            try:
                call()
            except (httpx.HTTPError, RuntimeError):
                continue
        self._http.close()


class EurekaFetcher:
    """A consumer's local registry, refreshed from full and delta fetches."""

    def __init__(self, base_url: str, app: str, fetch_interval: float = 30.0) -> None:
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.app = app.upper()
        self.fetch_interval = fetch_interval
        self._http = httpx.Client(timeout=5.0, headers=JSON, trust_env=False)
        self._registry: dict[str, dict[str, Any]] = {}  # instance id -> instance
        self.full_fetches = 0
        self.delta_fetches = 0

    def _key(self, instance: dict[str, Any]) -> str:
        return str(instance.get("instanceId") or instance.get("hostName"))

    def full(self) -> None:
        r = self._http.get(f"{self.base}apps/")
        r.raise_for_status()
        self._registry = {self._key(i): i for i in _instances(r.json())}
        self.full_fetches += 1

    def delta(self) -> None:
        r = self._http.get(f"{self.base}apps/delta")
        r.raise_for_status()
        body = r.json()
        for instance in _instances(body):
            key = self._key(instance)
            if instance.get("actionType") == "DELETED":
                self._registry.pop(key, None)
            else:
                self._registry[key] = instance
        self.delta_fetches += 1
        expected = str(((body.get("applications") or {}).get("apps__hashcode")) or "")
        if expected and expected != self.hashcode():
            self.full()

    def refresh(self) -> None:
        if self.full_fetches == 0:
            self.full()
        else:
            self.delta()

    def hashcode(self) -> str:
        counts = Counter(str(i.get("status")) for i in self._registry.values())
        return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))

    def up_hosts(self) -> list[str]:
        """``ip:port`` of this app's UP instances (the filtered list lookups use)."""
        return sorted(
            f"{i.get('ipAddr')}:{_port(i.get('port'))}"
            for i in self._registry.values()
            if str(i.get("app", "")).upper() == self.app and i.get("status") == "UP"
        )

    def close(self) -> None:
        self._http.close()
