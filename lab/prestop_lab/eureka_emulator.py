"""A Eureka server emulator for the lab and the tests (HTTP, loopback).

It follows ``docs/eureka.md``; comments cite the
Netflix/eureka source (``NE v2.0.6:<file>``) or Spring Cloud Netflix (``SCN v5.0.2:<file>``) a
behaviour was taken from. What it models:

* paths under ``/eureka/`` and ``/eureka/v2/`` (Spring Cloud ≥ 4 rewrites the first to the
  second); app names upper-cased, instance ids verbatim;
* JSON when ``Accept`` contains ``json``, XML otherwise; the Jackson shapes (arrays for one
  element, ``"$"``/``"@enabled"`` ports, ``@Auto`` fields as strings, the empty-metadata
  marker) with switches for the legacy single-object and lower-case ``overriddenstatus`` forms;
* register/heartbeat/status/override-delete/metadata/cancel with their status codes, the
  override map and the rule chain, ``lastDirtyTimestamp`` handling;
* the two-level response cache (read-write invalidated on change, read-only refreshed at clock
  multiples of ``cache_update_interval``), the delta queue, leases with the 2x expiry, eviction
  with the 15 % cap and self-preservation;
* Basic auth, CSRF-protected writes, fault injection, and peers with delayed replication.

Not modelled: remote regions, VIP/SVIP reads, the compact codec, the AWS data-centre info.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from prestop_lab.loopback import LoopbackServer

STATUSES = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN")
REPLICATION_HEADER = "x-netflix-discovery-replication"
EMPTY_METADATA_CLASS = "java.util.Collections$EmptyMap"
DEFAULT_DC_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"


@dataclass
class EurekaConfig:
    read_only_cache: bool = True
    cache_update_interval: float = 30.0
    rw_cache_expiry: float = 180.0
    delta_retention: float = 180.0
    delta_prune_interval: float = 30.0
    eviction_interval: float = 60.0
    self_preservation: bool = True
    users: dict[str, str] | None = None
    csrf_protected_writes: bool = False
    legacy_single_objects: bool = False
    legacy_lowercase_override: bool = False
    fail_status: int | None = None
    delay: float = 0.0
    replication_delay: float = 0.5
    replication_loss: float = 0.0  # share of replication calls dropped (a peer unreachable)
    # A plain Netflix server that synced 0 instances at start refuses registry reads with 403
    # for 5 minutes (NE PeerAwareInstanceRegistryImpl.shouldAllowAccess; Spring Cloud's
    # defaultOpenForTrafficCount avoids it).
    access_gate: bool = False


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


class HttpError(Exception):
    def __init__(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        super().__init__(status)
        self.status, self.body, self.content_type = status, body, content_type


@dataclass
class Lease:
    """One registration: the stored InstanceInfo (as a dict) and the lease times (seconds)."""

    info: dict[str, Any]
    duration: float
    registered: float
    last_update: float  # after a renewal: renewal time + duration (NE Lease.renew)
    service_up: float
    evicted: float = 0.0

    def expired(self, now: float) -> bool:
        # NE v2.0.6 CORE/lease/Lease.java isExpired: now > lastUpdate + duration ("will not fix").
        return self.evicted > 0 or now > self.last_update + self.duration


class Registry:
    """Leases, overrides, the delta queue and the response caches, under one lock."""

    def __init__(self, config: EurekaConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.apps: dict[str, dict[str, Lease]] = {}
        self.overrides: dict[str, tuple[str, float]] = {}  # id -> (status, last access)
        self.delta: list[tuple[float, Lease]] = []
        self.delta_version = 0
        self.rw: dict[tuple[str, str], tuple[bytes, float]] = {}
        self.ro: dict[tuple[str, str], bytes] = {}
        # How to regenerate each cached key (the read-only refresh needs it without a request).
        self._renderers: dict[tuple[str, str], Callable[[], bytes]] = {}
        self.expected_clients = 1  # Spring's defaultOpenForTrafficCount (SCN InstanceRegistry)
        self.renewals: list[float] = []
        now = clock()
        self.next_cache_tick = _next_multiple(now, config.cache_update_interval)
        self.next_prune = now + config.delta_prune_interval
        self.next_eviction = now + config.eviction_interval

    # --- helpers ---

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def lease(self, app: str, instance_id: str) -> Lease | None:
        return self.apps.get(app, {}).get(instance_id)

    def live_lease(self, app: str, instance_id: str) -> Lease | None:
        """The lease, or None when missing or expired while expiry is enabled.

        See docs/eureka.md#leases-and-expiry.
        """
        lease = self.lease(app, instance_id)
        if lease is None:
            return None
        if self.expiry_enabled() and lease.expired(self.clock()):
            return None
        return lease

    def override(self, instance_id: str) -> str | None:
        entry = self.overrides.get(instance_id)
        if entry is None:
            return None
        if self.clock() - entry[1] > 3600:  # Guava expireAfterAccess(1 h)
            del self.overrides[instance_id]
            return None
        self.overrides[instance_id] = (entry[0], self.clock())
        return entry[0]

    def resolve_status(
        self, evaluated: str, instance_id: str, existing: Lease | None, replication: bool
    ) -> str:
        """The rule chain (NE v2.0.6 CORE/registry/PeerAwareInstanceRegistryImpl.java:
        DownOrStartingRule, OverrideExistsRule, LeaseExistsRule for non-replicated calls)."""
        if evaluated not in ("UP", "OUT_OF_SERVICE"):
            return evaluated
        override = self.override(instance_id)
        if override is not None:
            return override
        if not replication and existing is not None:
            stored = existing.info.get("status")
            if stored in ("UP", "OUT_OF_SERVICE"):
                return str(stored)
        return evaluated

    def changed(self, lease: Lease, action: str) -> None:
        lease.info["actionType"] = action
        lease.info["lastUpdatedTimestamp"] = self.now_ms()
        self.delta.append((self.clock(), lease))
        app = str(lease.info["app"])
        # NE ResponseCacheImpl.invalidate: the app's key, ALL_APPS and ALL_APPS_DELTA.
        for key in list(self.rw):
            if key[0] in ("apps", "delta", f"app:{app}"):
                del self.rw[key]

    def expiry_enabled(self) -> bool:
        """Self-preservation (NE PeerAwareInstanceRegistryImpl.isLeaseExpirationEnabled)."""
        if not self.config.self_preservation:
            return True
        threshold = math.floor(self.expected_clients * (60 / 30) * 0.85)
        now = self.clock()
        renews = sum(1 for t in self.renewals if now - t <= 60)
        return renews > threshold

    def renew(self, lease: Lease) -> None:
        now = self.clock()
        lease.last_update = now + lease.duration
        self.renewals = [t for t in self.renewals if now - t <= 60] + [now]

    # --- writes ---

    def register(self, app: str, posted: dict[str, Any], replication: bool) -> Lease:
        """NE v2.0.6 CORE/registry/AbstractInstanceRegistry.java register."""
        now = self.clock()
        instance_id = instance_key(posted)
        existing = self.lease(app, instance_id)
        info = dict(posted)
        if existing is not None and int(existing.info.get("lastDirtyTimestamp", 0)) > int(
            posted.get("lastDirtyTimestamp", 0)
        ):
            info = dict(existing.info)  # the stored instance is newer: the posted one is ignored
        elif existing is None:
            self.expected_clients += 1
        duration = float(posted.get("leaseInfo", {}).get("durationInSecs") or 90)
        lease = Lease(
            info=info,
            duration=duration if duration > 0 else 90.0,
            registered=now,
            last_update=now,
            service_up=existing.service_up if existing else now,
        )
        posted_override = str(posted.get("overriddenStatus") or "UNKNOWN")
        if posted_override != "UNKNOWN" and instance_id not in self.overrides:
            self.overrides[instance_id] = (posted_override, now)
        override = self.override(instance_id)
        if override is not None:
            info["overriddenStatus"] = override
        info["status"] = self.resolve_status(
            str(info.get("status", "UP")), instance_id, existing, replication
        )
        self.apps.setdefault(app, {})[instance_id] = lease
        self.changed(lease, "ADDED")
        return lease

    def cancel(self, app: str, instance_id: str) -> bool:
        """NE internalCancel: the override goes even when there is no lease."""
        self.overrides.pop(instance_id, None)
        lease = self.apps.get(app, {}).pop(instance_id, None)
        if lease is None:
            return False
        if not self.apps[app]:
            del self.apps[app]
        lease.evicted = self.clock()
        self.expected_clients = max(0, self.expected_clients - 1)
        self.changed(lease, "DELETED")
        return True

    # --- timers ---

    def tick(self) -> None:
        now = self.clock()
        if now >= self.next_cache_tick:
            # NE ResponseCacheImpl: the timer copies keys already in the read-only cache.
            for key in list(self.ro):
                self.ro[key] = self._rw_get(key)
            self.next_cache_tick = _next_multiple(now, self.config.cache_update_interval)
        if now >= self.next_prune:
            self.delta = [(t, le) for t, le in self.delta if now - t <= self.config.delta_retention]
            self.next_prune = now + self.config.delta_prune_interval
        if now >= self.next_eviction:
            self.evict(now)
            self.next_eviction = now + self.config.eviction_interval

    def evict(self, now: float) -> None:
        """At most size - floor(size * 0.85) expired leases a run (NE AbstractInstanceRegistry)."""
        if not self.expiry_enabled():
            return
        expired = [
            (app, iid)
            for app, leases in self.apps.items()
            for iid, le in leases.items()
            if le.expired(now)
        ]
        size = sum(len(v) for v in self.apps.values())
        limit = size - math.floor(size * 0.85)
        for app, iid in expired[: max(0, limit)]:
            self.cancel(app, iid)

    # --- reads through the caches ---

    def cached(self, key: tuple[str, str], render: Callable[[], bytes]) -> bytes:
        self._renderers[key] = render
        if not self.config.read_only_cache:
            return self._rw_get(key)
        if key not in self.ro:
            # A key read for the first time is loaded fresh from the read-write cache.
            self.ro[key] = self._rw_get(key)
        return self.ro[key]

    def _rw_get(self, key: tuple[str, str]) -> bytes:
        entry = self.rw.get(key)
        now = self.clock()
        if entry is not None and now - entry[1] < self.config.rw_cache_expiry:
            return entry[0]
        if key[0] == "delta":
            self.delta_version += 1
        payload = self._renderers[key]()
        self.rw[key] = (payload, now)
        return payload

    def status_counts(self) -> str:
        counts: dict[str, int] = {}
        for leases in self.apps.values():
            for lease in leases.values():
                status = str(lease.info.get("status"))
                counts[status] = counts.get(status, 0) + 1
        # NE Applications.getReconcileHashCode: STATUS_count_ in status-name order.
        return "".join(f"{s}_{counts[s]}_" for s in sorted(counts))


def _next_multiple(now: float, interval: float) -> float:
    return (math.floor(now / interval) + 1) * interval if interval > 0 else now


def instance_key(info: dict[str, Any]) -> str:
    """InstanceInfo.getId(): instanceId if set, else hostName (NE ECL/appinfo/InstanceInfo)."""
    return str(info.get("instanceId") or info.get("hostName") or "")


# --- representations ---


def _port_value(raw: Any) -> tuple[int, bool]:
    if isinstance(raw, dict):
        return int(str(raw.get("$", 0))), str(raw.get("@enabled", "true")).lower() == "true"
    return int(str(raw or 0)), True


class Codec:
    """JSON and XML writers for instances, applications and the registry."""

    def __init__(self, config: EurekaConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry

    def lease_info(self, lease: Lease) -> dict[str, Any]:
        renewal = lease.info.get("leaseInfo", {}).get("renewalIntervalInSecs", 30)
        return {
            "renewalIntervalInSecs": int(renewal),
            "durationInSecs": int(lease.duration),
            "registrationTimestamp": int(lease.registered * 1000),
            "lastRenewalTimestamp": int(lease.last_update * 1000),
            "evictionTimestamp": int(lease.evicted * 1000),
            "serviceUpTimestamp": int(lease.service_up * 1000),
        }

    def instance_json(self, lease: Lease) -> dict[str, Any]:
        """Field order and types of NE EurekaJacksonCodec.InstanceInfoSerializer.

        See docs/eureka.md#instance-json.
        """
        i = lease.info
        port, port_on = _port_value(i.get("port"))
        sport, sport_on = _port_value(i.get("securePort", {"$": 443, "@enabled": "false"}))
        override_key = (
            "overriddenstatus" if self.config.legacy_lowercase_override else "overriddenStatus"
        )
        out: dict[str, Any] = {}
        if i.get("instanceId"):
            out["instanceId"] = i["instanceId"]
        out |= {
            "hostName": i.get("hostName"),
            "app": i.get("app"),
            "ipAddr": i.get("ipAddr"),
            "status": i.get("status"),
            override_key: i.get("overriddenStatus") or "UNKNOWN",
            "port": {"$": port, "@enabled": "true" if port_on else "false"},
            "securePort": {"$": sport, "@enabled": "true" if sport_on else "false"},
            "countryId": 1,
            "dataCenterInfo": {
                "@class": DEFAULT_DC_CLASS,
                "name": (i.get("dataCenterInfo") or {}).get("name", "MyOwn"),
            },
            "leaseInfo": self.lease_info(lease),
            "metadata": dict(i.get("metadata") or {}) or {"@class": EMPTY_METADATA_CLASS},
            "homePageUrl": i.get("homePageUrl"),
            "statusPageUrl": i.get("statusPageUrl"),
            "healthCheckUrl": i.get("healthCheckUrl"),
            "vipAddress": i.get("vipAddress"),
            "secureVipAddress": i.get("secureVipAddress"),
            # @Auto fields: String.valueOf(), only when non-null.
            "isCoordinatingDiscoveryServer": "false",
            "lastUpdatedTimestamp": str(i.get("lastUpdatedTimestamp", 0)),
            "lastDirtyTimestamp": str(i.get("lastDirtyTimestamp", 0)),
            "actionType": str(i.get("actionType", "ADDED")),
        }
        return {k: v for k, v in out.items() if v is not None}

    def _many(self, items: list[Any]) -> Any:
        if self.config.legacy_single_objects and len(items) == 1:
            return items[0]  # XStream/Jettison-era servers
        return items

    def application_json(self, app: str, leases: list[Lease]) -> dict[str, Any]:
        return {"name": app, "instance": self._many([self.instance_json(le) for le in leases])}

    def applications_json(self, version: str, groups: dict[str, list[Lease]]) -> bytes:
        apps = [self.application_json(app, leases) for app, leases in sorted(groups.items())]
        body = {
            "applications": {
                "versions__delta": version,
                "apps__hashcode": self.registry.status_counts(),
                "application": self._many(apps),
            }
        }
        return json.dumps(body).encode()

    def instance_xml(self, lease: Lease) -> ET.Element:
        """NE ECL/discovery/converters/Converters.java InstanceInfoConverter.

        See docs/eureka.md#instance-xml.
        """
        data = self.instance_json(lease)
        el = ET.Element("instance")
        for key, value in data.items():
            if key in ("overriddenStatus", "overriddenstatus"):
                ET.SubElement(el, "overriddenstatus").text = str(value)
            elif key in ("port", "securePort"):
                sub = ET.SubElement(el, key, enabled=value["@enabled"])
                sub.text = str(value["$"])
            elif key == "dataCenterInfo":
                sub = ET.SubElement(el, key, {"class": value["@class"]})
                ET.SubElement(sub, "name").text = value["name"]
            elif key == "leaseInfo":
                sub = ET.SubElement(el, key)
                for k, v in value.items():
                    ET.SubElement(sub, k).text = str(v)
            elif key == "metadata":
                if "@class" in value:
                    ET.SubElement(el, key, {"class": EMPTY_METADATA_CLASS})
                else:
                    sub = ET.SubElement(el, key)
                    for k, v in value.items():
                        ET.SubElement(sub, k).text = str(v)
            else:
                ET.SubElement(el, key).text = str(value)
        return el

    def applications_xml(self, version: str, groups: dict[str, list[Lease]]) -> bytes:
        root = ET.Element("applications")
        ET.SubElement(root, "versions__delta").text = version
        ET.SubElement(root, "apps__hashcode").text = self.registry.status_counts()
        for app, leases in sorted(groups.items()):
            app_el = ET.SubElement(root, "application")
            ET.SubElement(app_el, "name").text = app
            for lease in leases:
                app_el.append(self.instance_xml(lease))
        return bytes(ET.tostring(root, encoding="utf-8"))

    def application_xml(self, app: str, leases: list[Lease]) -> bytes:
        root = ET.Element("application")
        ET.SubElement(root, "name").text = app
        for lease in leases:
            root.append(self.instance_xml(lease))
        return bytes(ET.tostring(root, encoding="utf-8"))


def parse_instance(raw: bytes, content_type: str) -> dict[str, Any]:
    """A registration body, JSON or XML, as a dict in the JSON shape."""
    if "json" in content_type:
        body = json.loads(raw or b"{}")
        instance = body.get("instance") if isinstance(body, dict) else None
        if not isinstance(instance, dict):
            raise ValueError("no instance")
        out = dict(instance)
        if "overriddenstatus" in out and "overriddenStatus" not in out:
            out["overriddenStatus"] = out.pop("overriddenstatus")
        return out
    root = ET.fromstring(raw)  # noqa: S314 - lab-only, loopback clients
    if root.tag != "instance":
        raise ValueError("no instance")
    out = {}
    for child in root:
        if child.tag in ("port", "securePort"):
            out[child.tag] = {"$": int(child.text or 0), "@enabled": child.get("enabled", "true")}
        elif child.tag == "dataCenterInfo":
            out[child.tag] = {"name": child.findtext("name")}
        elif child.tag in ("leaseInfo", "metadata"):
            out[child.tag] = {c.tag: c.text or "" for c in child}
        elif child.tag == "overriddenstatus":
            out["overriddenStatus"] = child.text
        else:
            out[child.tag] = child.text
    return out


# --- the HTTP API ---


class Api:
    def __init__(self, emulator: EurekaEmulator) -> None:
        self.e = emulator
        self.config = emulator.config
        self.registry = emulator.registry
        self.codec = Codec(emulator.config, emulator.registry)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        if self.config.delay:
            time.sleep(self.config.delay)
        if self.config.fail_status is not None:
            return self.config.fail_status, b"", {}
        if not path.startswith("/eureka/"):
            raise HttpError(404)
        sub = path[len("/eureka/") :]
        # SCN v5.0.2 SRV/EurekaServerAutoConfiguration.java: /eureka/X is served as /eureka/v2/X.
        if sub.startswith("v2/"):
            sub = sub[3:]
        self._auth(method, headers, path)
        parts = [unquote(p) for p in sub.split("/") if p != ""]
        replication = headers.get(REPLICATION_HEADER, "").lower() == "true"
        json_wanted = "json" in headers.get("accept", "")
        with self.registry.lock:
            return self._route(method, parts, query, headers, body, replication, json_wanted)

    def _auth(self, method: str, headers: dict[str, str], path: str) -> None:
        if self.config.users:
            user = password = None
            auth = headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    decoded = base64.b64decode(auth[6:]).decode()
                    user, _, password = decoded.partition(":")
                except (ValueError, UnicodeDecodeError):
                    user = None
            if user is None or self.config.users.get(user) != password:
                raise HttpError(
                    401,
                    self._spring_error(401, "Unauthorized", path),
                    "application/json",
                )
        if self.config.csrf_protected_writes and method in ("POST", "PUT", "DELETE"):
            # Spring Security with CSRF left on for /eureka/**: writes 403, reads work.
            raise HttpError(403, self._spring_error(403, "Forbidden", path), "application/json")

    def _spring_error(self, status: int, error: str, path: str) -> str:
        return json.dumps(
            {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
                "status": status,
                "error": error,
                "path": path,
            }
        )

    def _route(
        self,
        method: str,
        parts: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        replication: bool,
        json_wanted: bool,
    ) -> tuple[int, bytes, dict[str, str]]:
        r = self.registry
        if parts == ["status"] and method == "GET":
            return self._status()
        if parts[:1] == ["instances"] and len(parts) == 2 and method == "GET":
            for app in r.apps:
                lease = r.live_lease(app, parts[1])
                if lease is not None:
                    return self._one(lease, json_wanted)
            raise HttpError(404)
        if parts[:1] != ["apps"]:
            raise HttpError(404)
        if self.config.access_gate and method == "GET" and (len(parts) <= 2 or parts[1] == "delta"):
            raise HttpError(403)
        if len(parts) == 1 and method == "GET":
            return self._cached("apps", headers, json_wanted)
        if parts[1:] == ["delta"] and method == "GET":
            return self._cached("delta", headers, json_wanted)
        # NE ApplicationResource: appName.toUpperCase().
        app = parts[1].upper()
        if len(parts) == 2:
            if method == "GET":
                if not r.apps.get(app):
                    raise HttpError(404)
                return self._cached(f"app:{app}", headers, json_wanted)
            if method == "POST":
                return self._register(app, headers, body, replication)
            raise HttpError(405)
        instance_id = parts[2]
        if len(parts) == 3:
            if method == "GET":
                lease = r.live_lease(app, instance_id)
                if lease is None:
                    raise HttpError(404)
                return self._one(lease, json_wanted)
            if method == "PUT":
                return self._heartbeat(app, instance_id, query, replication)
            if method == "DELETE":
                if not r.cancel(app, instance_id):
                    raise HttpError(404)
                self.e.replicate("DELETE", f"apps/{app}/{instance_id}", {}, None, replication)
                return 200, b"", {}
            raise HttpError(405)
        if len(parts) == 4 and parts[3] == "status":
            if method == "PUT":
                return self._status_update(app, instance_id, query, replication)
            if method == "DELETE":
                return self._delete_override(app, instance_id, query, replication)
        if len(parts) == 4 and parts[3] == "metadata" and method == "PUT":
            lease = r.live_lease(app, instance_id)
            if lease is None:
                raise HttpError(404)
            info = dict(lease.info)
            info["metadata"] = {**(info.get("metadata") or {}), **query}
            # NE InstanceResource.updateMetadata: a re-registration (ADDED, new lease).
            r.register(app, info, replication=False)
            return 200, b"", {}
        raise HttpError(404)

    def _status(self) -> tuple[int, bytes, dict[str, str]]:
        peers = ",".join(p.url for p in self.e.peers)
        body = {
            "generalStats": {"num-of-cpus": "2"},
            "applicationStats": {
                "registered-replicas": peers,
                "available-replicas": peers,
                "unavailable-replicas": "",
            },
        }
        return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}

    def _one(self, lease: Lease, json_wanted: bool) -> tuple[int, bytes, dict[str, str]]:
        if json_wanted:
            body = json.dumps({"instance": self.codec.instance_json(lease)}).encode()
            return 200, body, {"Content-Type": "application/json"}
        element = self.codec.instance_xml(lease)
        xml = bytes(ET.tostring(element, encoding="utf-8"))
        return 200, xml, {"Content-Type": "application/xml"}

    def _cached(
        self, name: str, headers: dict[str, str], json_wanted: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        fmt = "json" if json_wanted else "xml"
        key = (name, fmt)
        r = self.registry

        def render() -> bytes:
            if name == "delta":
                groups: dict[str, list[Lease]] = {}
                for _, lease in r.delta:
                    groups.setdefault(str(lease.info["app"]), []).append(lease)
                version = str(r.delta_version)
            elif name == "apps":
                groups = {app: list(ls.values()) for app, ls in r.apps.items() if ls}
                version = "1"
            else:
                app = name[4:]
                leases = list(r.apps.get(app, {}).values())
                if fmt == "json":
                    body = {"application": self.codec.application_json(app, leases)}
                    return json.dumps(body).encode()
                return self.codec.application_xml(app, leases)
            if fmt == "json":
                return self.codec.applications_json(version, groups)
            return self.codec.applications_xml(version, groups)

        payload = r.cached(key, render)
        content_type = "application/json" if json_wanted else "application/xml"
        out_headers = {"Content-Type": content_type}
        # Only apps and apps/delta honour gzip (NE ApplicationsResource).
        if name in ("apps", "delta") and "gzip" in headers.get("accept-encoding", ""):
            return 200, gzip.compress(payload), {**out_headers, "Content-Encoding": "gzip"}
        return 200, payload, out_headers

    def _register(
        self, app: str, headers: dict[str, str], body: bytes, replication: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        content_type = headers.get("content-type", "").lower()
        if "json" not in content_type and "xml" not in content_type:
            raise HttpError(415)
        try:
            posted = parse_instance(body, content_type)
        except (ValueError, ET.ParseError):
            raise HttpError(
                400, json.dumps({"error": "cannot parse request body"}), "application/json"
            ) from None
        # NE v2.0.6 CORE/resources/ApplicationResource.java addInstance: validation in order.
        posted["app"] = str(posted.get("app") or "").upper() or None
        dc = posted.get("dataCenterInfo")
        checks = [
            (not instance_key(posted), "Missing instanceId"),
            (not posted.get("hostName"), "Missing hostname"),
            (not posted.get("ipAddr"), "Missing ip address"),
            (not posted.get("app"), "Missing appName"),
            (
                posted.get("app") not in (None, app),
                f"Mismatched appName, expecting {app} but was {posted.get('app')}",
            ),
            (not isinstance(dc, dict), "Missing dataCenterInfo"),
            (isinstance(dc, dict) and not dc.get("name"), "Missing dataCenterInfo Name"),
        ]
        for failed, message in checks:
            if failed:
                raise HttpError(400, message)
        lease = self.registry.register(app, posted, replication)
        self.e.replicate("POST", f"apps/{app}", {}, {"instance": dict(lease.info)}, replication)
        return 204, b"", {}

    def _heartbeat(
        self, app: str, instance_id: str, query: dict[str, str], replication: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        """NE v2.0.6 CORE/resources/InstanceResource.java renewLease; `status` is ignored."""
        r = self.registry
        lease = r.lease(app, instance_id)
        if lease is None:
            raise HttpError(404)
        status = r.resolve_status(str(lease.info.get("status")), instance_id, lease, replication)
        if status == "UNKNOWN":
            raise HttpError(404)  # "re-register required", without renewing
        if lease.info.get("status") != status:
            lease.info["status"] = status
        r.renew(lease)
        self.e.replicate("PUT", f"apps/{app}/{instance_id}", query, None, replication)
        client_dirty = query.get("lastDirtyTimestamp")
        if client_dirty is not None and client_dirty.isdigit():
            server_dirty = int(lease.info.get("lastDirtyTimestamp") or 0)
            if int(client_dirty) > server_dirty:
                raise HttpError(404)  # the lease *was* renewed; the client must re-register
            if server_dirty > int(client_dirty) and replication:
                body = json.dumps({"instance": self.codec.instance_json(lease)}).encode()
                return 409, body, {"Content-Type": "application/json"}
        return 200, b"", {}

    def _status_update(
        self, app: str, instance_id: str, query: dict[str, str], replication: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        """NE AbstractInstanceRegistry.statusUpdate."""
        r = self.registry
        lease = r.live_lease(app, instance_id)
        if lease is None:
            raise HttpError(404)
        value = query.get("value")
        if value not in STATUSES:  # InstanceStatus.valueOf: case-sensitive
            raise HttpError(500)
        r.renew(lease)
        if lease.info.get("status") != value:
            r.overrides[instance_id] = (str(value), r.clock())
            lease.info["overriddenStatus"] = value
            lease.info["status"] = value
            dirty = query.get("lastDirtyTimestamp", "")
            if dirty.isdigit() and int(dirty) > int(lease.info.get("lastDirtyTimestamp") or 0):
                lease.info["lastDirtyTimestamp"] = int(dirty)
            r.changed(lease, "MODIFIED")
            self.e.replicate("PUT", f"apps/{app}/{instance_id}/status", query, None, replication)
        return 200, b"", {}

    def _delete_override(
        self, app: str, instance_id: str, query: dict[str, str], replication: bool
    ) -> tuple[int, bytes, dict[str, str]]:
        """NE AbstractInstanceRegistry.deleteStatusOverride; the new status defaults to UNKNOWN."""
        r = self.registry
        lease = r.live_lease(app, instance_id)
        if lease is None:
            raise HttpError(404)
        value = query.get("value", "UNKNOWN")
        if value not in STATUSES:
            raise HttpError(500)
        r.renew(lease)
        if r.overrides.pop(instance_id, None) is not None:
            lease.info["overriddenStatus"] = "UNKNOWN"
            lease.info["status"] = value
            r.changed(lease, "MODIFIED")
            self.e.replicate("DELETE", f"apps/{app}/{instance_id}/status", query, None, replication)
        return 200, b"", {}


_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    415: ("Unsupported Media Type"),
    500: "Internal Server Error",
}


def error_page(status: int, path: str, accept: str) -> tuple[bytes, str]:
    """Spring Boot's error page for a bodiless Jersey error (seen on the real server).

    JSON unless the client asks for XML only (then Jackson XML's ``<Map>``); see
    docs/differences.md.
    """
    fields = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()),
        "status": str(status),
        "error": _REASONS.get(status, "Error"),
        "path": path,
    }
    if "xml" in accept and "json" not in accept:
        root = ET.Element("Map")
        for key, value in fields.items():
            ET.SubElement(root, key).text = value
        return bytes(ET.tostring(root, encoding="utf-8")), "application/xml;charset=UTF-8"
    body = {**fields, "status": status}
    return json.dumps(body).encode(), "application/json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(k, v)  # first value wins (NE updateMetadata)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, payload, out_headers = self.server.api.handle(
                self.command, parts.path, query, headers, body
            )
        except HttpError as exc:
            status, payload = exc.status, exc.body.encode()
            out_headers = {"Content-Type": exc.content_type} if payload else {}
            if not payload and status >= 400:
                payload, content_type = error_page(status, parts.path, headers.get("accept", ""))
                out_headers = {"Content-Type": content_type}
            if exc.status == 401:
                out_headers["WWW-Authenticate"] = 'Basic realm="Realm"'
        self.server.emulator.record(self.command, parts.path, query, headers, status)
        self.send_response(status)
        for k, v in out_headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: Api
    emulator: EurekaEmulator


class EurekaEmulator(LoopbackServer):
    """A Eureka server on loopback; use as a context manager or start()/stop()."""

    def __init__(
        self,
        config: EurekaConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config or EurekaConfig()
        self.clock = clock
        self.registry = Registry(self.config, clock)
        self.peers: list[EurekaEmulator] = []
        self.requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self.api = Api(self)
        self._server = _Server((host, port), _Handler)
        self._server.api = self.api
        self._server.emulator = self
        self._replicator = httpx.Client(timeout=2.0, trust_env=False)
        self._random = random.Random(7)
        # Replication calls dropped by replication_loss: tests wait for them, not for a while.
        # Counted under a lock: each call is sent from a timer thread of its own.
        self.replications_lost = 0
        self._lost_lock = threading.Lock()

    def stop(self) -> None:
        super().stop()
        self._replicator.close()

    def tick(self) -> None:
        with self.registry.lock:
            self.registry.tick()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/eureka/"

    # --- peers ---

    def add_peer(self, other: EurekaEmulator) -> None:
        self.peers.append(other)

    def replicate(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: dict[str, Any] | None,
        replicated: bool,
    ) -> None:
        """Send a write to every peer after ``replication_delay``, marked as replicated."""
        if replicated or not self.peers:
            return
        headers = {REPLICATION_HEADER: "true", "Accept": "application/json"}
        if self.config.users:
            user, password = next(iter(self.config.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"

        def send(peer: EurekaEmulator) -> None:
            if self._stop.is_set():
                return
            if self._random.random() < self.config.replication_loss:
                with self._lost_lock:
                    self.replications_lost += 1
                return
            try:
                self._replicator.request(
                    method, peer.url + path, params=query or None, json=body, headers=headers
                )
            except (httpx.HTTPError, RuntimeError):
                return  # the peer is down: NE drops the task after its retries

        for peer in self.peers:
            timer = threading.Timer(self.config.replication_delay, send, args=(peer,))
            timer.daemon = True
            timer.start()

    # --- lab control and inspection ---

    def register(
        self,
        app: str,
        instance_id: str,
        ip: str,
        port: int,
        *,
        status: str = "UP",
        lease_duration: float = 90.0,
        metadata: dict[str, str] | None = None,
        hostname: str | None = None,
    ) -> None:
        host = hostname or ip
        info = {
            "instanceId": instance_id,
            "hostName": host,
            "app": app.upper(),
            "ipAddr": ip,
            "status": status,
            "overriddenStatus": "UNKNOWN",
            "port": {"$": port, "@enabled": "true"},
            "dataCenterInfo": {"name": "MyOwn"},
            "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": lease_duration},
            "metadata": dict(metadata or {}),
            "vipAddress": app.lower(),
            "secureVipAddress": app.lower(),
            "homePageUrl": f"http://{host}:{port}/",
            "statusPageUrl": f"http://{host}:{port}/actuator/info",
            "healthCheckUrl": f"http://{host}:{port}/actuator/health",
            "lastDirtyTimestamp": self.registry.now_ms(),
        }
        with self.registry.lock:
            self.registry.register(app.upper(), info, replication=True)

    def instance(self, app: str, instance_id: str) -> dict[str, Any] | None:
        with self.registry.lock:
            lease = self.registry.lease(app.upper(), instance_id)
            return None if lease is None else self.api.codec.instance_json(lease)

    def override(self, instance_id: str) -> str | None:
        with self.registry.lock:
            entry = self.registry.overrides.get(instance_id)
            return None if entry is None else entry[0]

    def record(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], status: int
    ) -> None:
        shown = {k: ("<redacted>" if k == "authorization" else v) for k, v in headers.items()}
        with self._requests_lock:
            self.requests.append(RequestRecord(method, path, dict(query), shown, status))

    def writes(self) -> list[RequestRecord]:
        """Non-GET requests except heartbeats (PUT apps/{APP}/{id})."""
        with self._requests_lock:
            out = []
            for r in self.requests:
                if r.method == "GET":
                    continue
                tail = r.path.split("/apps/", 1)[-1].strip("/").split("/")
                if r.method == "PUT" and len(tail) == 2:
                    continue
                out.append(r)
            return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m prestop_lab.eureka_emulator")
    parser.add_argument("--port", type=int, default=8761)
    parser.add_argument("--cache-interval", type=float, default=30.0)
    parser.add_argument("--no-read-only-cache", action="store_true")
    args = parser.parse_args(argv)
    config = EurekaConfig(
        cache_update_interval=args.cache_interval, read_only_cache=not args.no_read_only_cache
    )
    emulator = EurekaEmulator(config, port=args.port)
    emulator.start()
    print(f"EUREKA_EMULATOR_READY url={emulator.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emulator.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
