"""A Nacos server emulator for the lab and the tests (HTTP only, loopback).

It follows ``docs/nacos.md``; comments cite the Nacos source
(``N <tag>:<path>``) a behaviour was taken from. What it models:

* flavours 1.x, 2.x and 3.x with their API sets (3.x answers v1 admin and all v2 calls with 410);
* auth: login paths, JWT tokens with expiry, the token in ``Authorization: Bearer``, the
  ``accessToken`` param or (2.x/3.x) header, raw username/password, the server-identity header,
  and the per-flavour error texts and codes;
* 2.x/3.x two-layer data: instances owned by clients (lab "gRPC" clients or HTTP registrations)
  plus ops records per ``ip:port:cluster``; PUT replaces a record, PATCH clones and patches it,
  HTTP DELETE is a no-op for gRPC-owned instances; records are marked expired when the instance
  goes, deleted ``metadata_expiry`` later, and revived by a re-registration in between;
* consumer-facing reads filter disabled instances and lag writes by ``push_delay``.

Not modelled: gRPC (lab clients use the small ``/lab/v1`` HTTP API instead), clusters of
servers, Raft, persistent instances' health checks, UDP push.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from prestop_lab.loopback import LoopbackServer

Flavour = Literal["1.x", "2.x", "3.x"]
DEFAULT_VERSIONS = {"1.x": "1.4.8", "2.x": "2.5.1", "3.x": "3.0.3"}


@dataclass
class EmulatorConfig:
    flavour: Flavour = "2.x"
    version: str | None = None
    auth_enabled: bool = False
    admin_auth_enabled: bool = True  # 3.x only: nacos.core.auth.admin.enabled
    users: dict[str, str] = field(default_factory=lambda: {"nacos": "nacos"})
    token_ttl: float = 18000.0
    push_delay: float = 0.5
    metadata_expiry: float = 60.0
    cleaner_interval: float = 5.0
    client_timeout: float = 3.0
    server_identity: tuple[str, str] | None = None
    compat_admin_enabled: bool = False
    context_path: str = "/nacos"


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    status: int


@dataclass
class Instance:
    ip: str
    port: int
    cluster: str
    weight: float
    enabled: bool
    healthy: bool
    ephemeral: bool
    metadata: dict[str, str]
    owner: str  # client id; "ip:port#true" for HTTP registrations


@dataclass
class OpsRecord:
    enabled: bool = True
    # N 2.5.1:naming/.../core/v2/metadata/InstanceMetadata.java: a fresh record has weight 1.0.
    weight: float = 1.0
    extend: dict[str, str] = field(default_factory=dict)
    expired_at: float | None = None


@dataclass
class Client:
    id: str
    kind: Literal["grpc", "http"]
    last_beat: float


# How the lab's real Java consumer (nacos-client 3.0.3) shows in Nacos's subscriber lists.
SUBSCRIBER_AGENT = "Nacos-Java-Client:v3.0.3"

# A status the handler answers with a broken status line (``HTTP/1.1 0``) and no body.
BROKEN_ANSWER = 0


class HttpError(Exception):
    """An answer other than success: status, body and content type."""

    def __init__(self, status: int, body: str, content_type: str = "text/plain") -> None:
        super().__init__(body)
        self.status, self.body, self.content_type = status, body, content_type


SvcKey = tuple[str, str]  # (namespace, "group@@service")
InstKey = tuple[str, int, str]  # (ip, port, cluster)


class Store:
    """Services, instances, ops records and the consumer-facing cache (one lock)."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.services: set[SvcKey] = set()
        self.instances: dict[SvcKey, dict[InstKey, Instance]] = {}
        self.ops: dict[SvcKey, dict[InstKey, OpsRecord]] = {}
        self.clients: dict[str, Client] = {}
        self.cache: dict[SvcKey, tuple[int, list[dict[str, Any]]]] = {}
        # Subscribers per service: client id -> (ip, port, last seen). Real subscribers are gRPC
        # connections; lab consumers announce themselves with clientIP (as v1 list callers do)
        # and subscriberPort (their management port; v1 callers' udpPort is listed the same way).
        self.subscribers: dict[SvcKey, dict[str, tuple[str, int, float]]] = {}
        # (agent, app) per subscriber, as the subscriber lists show them.
        self.subscriber_agents: dict[tuple[SvcKey, str, int], tuple[str, str]] = {}
        self.dirty: dict[SvcKey, float] = {}
        self.revision = itertools.count(1)

    # --- views ---

    def effective(self, svc: SvcKey, inst: Instance) -> dict[str, Any]:
        """Client data overlaid by the ops record (N 2.5.1:.../InstanceUtil)."""
        enabled, weight, metadata = inst.enabled, inst.weight, dict(inst.metadata)
        if self.config.flavour != "1.x":
            rec = self.ops.get(svc, {}).get((inst.ip, inst.port, inst.cluster))
            if rec is not None:
                enabled, weight = rec.enabled, rec.weight
                metadata.update(rec.extend)
        return {
            "instanceId": f"{inst.ip}#{inst.port}#{inst.cluster}#{svc[1]}",
            "ip": inst.ip,
            "port": inst.port,
            "weight": weight,
            "healthy": inst.healthy,
            "enabled": enabled,
            "ephemeral": inst.ephemeral,
            "clusterName": inst.cluster,
            "serviceName": svc[1],
            "metadata": metadata,
            "instanceHeartBeatInterval": 5000,
            "instanceHeartBeatTimeOut": 15000,
            "ipDeleteTimeout": 30000,
        }

    def live(self, svc: SvcKey) -> list[dict[str, Any]]:
        with self.lock:
            return [self.effective(svc, i) for i in self.instances.get(svc, {}).values()]

    def served(self, svc: SvcKey) -> tuple[int, list[dict[str, Any]]]:
        with self.lock:
            return self.cache.get(svc, (0, []))

    def subscribe(self, svc: SvcKey, params: dict[str, str], agent: str = "") -> None:
        ip = params.get("clientIP") or params.get("clientIp")
        if not ip:
            return
        if params.get("subscriberPort"):
            # The lab's stand-in for a gRPC subscriber (which HTTP cannot be).
            port = int(params["subscriberPort"])
            agent, app = SUBSCRIBER_AGENT, "unknown"
        else:
            # N 2.3.1:naming/.../InstanceOperatorClientImpl.listInstance: a v1 list caller is a
            # (UDP push) subscriber only with a udpPort and a Nacos client's User-Agent; real
            # 2.3.1 and 3.1.0 both list it then (docs/differences.md).
            port = int(params.get("udpPort") or 0)
            nacos_client = agent.startswith(("Nacos-Java-Client", "Nacos-Go-Client"))
            if port <= 0 or not nacos_client:
                return
            app = params.get("app", "")
        with self.lock:
            self.subscribers.setdefault(svc, {})[f"{ip}:{port}#sub"] = (ip, port, self.clock())
            self.subscriber_agents[(svc, ip, port)] = (agent, app)

    def subscriber_agent(self, svc: SvcKey, ip: str, port: int) -> tuple[str, str]:
        """(agent, app) of a subscriber."""
        with self.lock:
            return self.subscriber_agents.get((svc, ip, port), (SUBSCRIBER_AGENT, "unknown"))

    def subscriber_list(self, svc: SvcKey) -> list[tuple[str, str, int]]:
        # A subscriber silent for 30 s is gone (its connection would have been closed).
        now = self.clock()
        with self.lock:
            subs = self.subscribers.get(svc, {})
            for cid, (_, _, seen) in list(subs.items()):
                if now - seen > 30:
                    del subs[cid]
            return [(cid, ip, port) for cid, (ip, port, _) in subs.items()]

    def subscriber_page(
        self, svc: SvcKey, page_no: int, page_size: int
    ) -> tuple[int, list[tuple[str, int]]]:
        """(total, the page's (ip, port)), in subscription order."""
        subs = [(ip, port) for _, ip, port in self.subscriber_list(svc)]
        start = min(max(0, (page_no - 1) * page_size), len(subs))
        return len(subs), subs[start : start + max(0, page_size)]

    def touch(self, svc: SvcKey) -> None:
        # N 2.5.1:naming/.../push/v2/NamingSubscriberServiceV2Impl: a PushDelayTask of
        # pushTaskDelay (500 ms) rebuilds the served ServiceInfo; reads lag until then.
        with self.lock:
            self.services.add(svc)
            self.dirty.setdefault(svc, self.clock())

    # --- client layer ---

    def register(self, svc: SvcKey, inst: Instance, client: Client) -> None:
        with self.lock:
            self.clients.setdefault(client.id, client)
            key = (inst.ip, inst.port, inst.cluster)
            self.instances.setdefault(svc, {})[key] = inst
            rec = self.ops.get(svc, {}).get(key)
            if rec is not None:
                # N 2.5.1:.../NamingMetadataManager.handleInstanceMetadataEvent: re-registering
                # only clears the expired mark, so an old "disabled" applies to the new pod.
                rec.expired_at = None
            self.touch(svc)

    def remove(self, svc: SvcKey, key: InstKey) -> None:
        with self.lock:
            if self.instances.get(svc, {}).pop(key, None) is None:
                return
            rec = self.ops.get(svc, {}).get(key)
            if rec is not None and rec.expired_at is None:
                rec.expired_at = self.clock()
            self.touch(svc)

    def drop_client(self, client_id: str) -> None:
        with self.lock:
            self.clients.pop(client_id, None)
            for svc, insts in list(self.instances.items()):
                for key, inst in list(insts.items()):
                    if inst.owner == client_id:
                        self.remove(svc, key)

    # --- background work ---

    def tick(self) -> None:
        now = self.clock()
        with self.lock:
            for svc, since in list(self.dirty.items()):
                if now - since >= self.config.push_delay:
                    del self.dirty[svc]
                    self.cache[svc] = (next(self.revision), self.live(svc))
                    self.changed.notify_all()
            for cid, client in list(self.clients.items()):
                if client.kind == "grpc" and now - client.last_beat > self.config.client_timeout:
                    self.drop_client(cid)

    def clean(self) -> None:
        # N 2.5.1:naming/.../core/v2/cleaner/ExpiredMetadataCleaner.java
        now = self.clock()
        with self.lock:
            for records in self.ops.values():
                for key, rec in list(records.items()):
                    if rec.expired_at is not None and now - rec.expired_at >= (
                        self.config.metadata_expiry
                    ):
                        del records[key]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Auth:
    """Users, issued tokens (HS256 JWTs) and the per-flavour error texts."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.key = secrets.token_bytes(32)
        self.tokens: dict[str, float] = {}  # token -> expiry on the clock
        self.lock = threading.Lock()

    def issue(self, user: str) -> str:
        # N 2.5.1:AUTH_PLUGIN/token/impl/JwtTokenManager.java: {"sub": user, "exp": epoch s}.
        header = _b64(json.dumps({"alg": "HS256"}).encode())
        exp = int(time.time() + self.config.token_ttl)
        payload = _b64(json.dumps({"sub": user, "exp": exp}).encode())
        sig = _b64(hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{sig}"
        with self.lock:
            self.tokens[token] = self.clock() + self.config.token_ttl
        return token

    def expire_all(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = self.clock() - 1

    def msg(self, text: str, code: int = 401) -> str:
        # N 3.0.3:plugin/auth/.../api/AuthResult.java wraps messages as "Code: %d, Message: %s."
        return f"Code: {code}, Message: {text}." if self.config.flavour == "3.x" else text

    def no_user_text(self) -> str:
        return {
            "1.x": "unknown user!",
            "2.x": "user not found!",
            "3.x": "User not found! Please check user exist or password is right!",
        }[self.config.flavour]

    def check(self, headers: dict[str, str], params: dict[str, str]) -> str | None:
        """None when the caller may pass, else the 403 message."""
        ident = self.config.server_identity
        if ident is not None and headers.get(ident[0].lower()) == ident[1]:
            return None  # N 2.5.1:auth/.../serveridentity/DefaultChecker.java
        token = None
        authz = headers.get("authorization", "")
        if authz.startswith("Bearer "):
            token = authz[len("Bearer ") :]
        elif params.get("accessToken"):
            token = params["accessToken"]
        elif self.config.flavour != "1.x" and headers.get("accesstoken"):
            # 1.x reads no accessToken header (N 1.4.8:.../NacosAuthManager.resolveToken).
            token = headers["accesstoken"]
        if token is not None:
            with self.lock:
                expiry = self.tokens.get(token)
            if expiry is None:
                return self.msg("token invalid!")
            if self.clock() >= expiry:
                return self.msg("token expired!")
            return None
        user, password = params.get("username"), params.get("password")
        if user is not None and self.config.users.get(user) == password:
            return None
        return self.msg(self.no_user_text())

    def login(self, params: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        if self.config.flavour != "1.x" and (("username" in params) != ("password" in params)):
            # 2.x/3.x: one of the two missing fails inside the auth plugin: 500.
            return 500, "caused: username or password is empty;", {}
        user, password = params.get("username", ""), params.get("password", "")
        if user not in self.config.users:
            if self.config.flavour == "1.x":
                return 403, "unknown user!", {}
            # UsernameNotFoundException → 500 (alibaba/nacos#15682).
            return 500, f"caused: User {user} not found;", {}
        if self.config.users[user] != password:
            if self.config.flavour == "2.x":
                # Real 2.3.1 (docs/differences.md): no valid status line, no body.
                return BROKEN_ANSWER, "", {}
            return 403, self.no_user_text(), {}
        token = self.issue(user)
        body = {
            "accessToken": token,
            "tokenTtl": int(self.config.token_ttl),
            "globalAdmin": True,
            "username": user,
        }
        return 200, json.dumps(body), {"Authorization": f"Bearer {token}"}


def parse_metadata(raw: str | None) -> dict[str, str]:
    """JSON object first, then ``k1=v1,k2=v2`` (N 2.5.1:.../UtilsAndCommons.parseMetadata)."""
    if raw is None or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    except ValueError:
        pass
    out: dict[str, str] = {}
    for pair in raw.split(","):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0]:
            raise HttpError(400, f"metadata format incorrect:{raw}")
        out[kv[0]] = kv[1]
    return out


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.lower() == "true"


class Api:
    """The HTTP API: routing, parameter rules and the per-version answers."""

    def __init__(self, config: EmulatorConfig, store: Store, auth: Auth) -> None:
        self.config, self.store, self.auth = config, store, auth
        self.version = config.version or DEFAULT_VERSIONS[config.flavour]
        self.down = False

    # --- answers ---

    @staticmethod
    def result(data: Any, code: int = 0, message: str = "success") -> tuple[int, str, str]:
        return 200, json.dumps({"code": code, "message": message, "data": data}), "json"

    def spring_error(self, status: int, message: str, path: str) -> HttpError:
        reason = {
            403: "Forbidden",
            404: "Not Found",
            410: "Gone",
            500: "Internal Server Error",
        }.get(status, "Error")
        body = {
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "status": status,
            "error": reason,
            "message": message,
            "path": path,
        }
        return HttpError(status, json.dumps(body), "application/json")

    def gone(self, path: str, replacement: str) -> HttpError:
        # N 3.0.3:core/.../controller/compatibility/ApiCompatibilityFilter.java
        inner = {
            "code": 40000,
            "message": f"Current API will be deprecated, please use API(s) `{replacement}` "
            "instead, or set `nacos.core.api.compatibility.admin.enabled=true` in "
            "application.properties.",
        }
        return self.spring_error(410, json.dumps(inner), path)

    def api_error(self, style: str, status: int, code: int, message: str, data: str) -> HttpError:
        if style == "v1":
            return HttpError(status, data)
        body = json.dumps({"code": code, "message": message, "data": data})
        return HttpError(status, body, "application/json")

    # --- dispatch ---

    def handle(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, str, str, dict[str, str]]:
        if self.down:
            # N 2.5.1:naming/.../naming/web/TrafficReviseFilter.java (the missing space is Nacos's).
            raise HttpError(503, "server is DOWNnow, please try again later!")
        ctx = self.config.context_path
        if ctx and not path.startswith(ctx + "/"):
            raise self.spring_error(404, "No static resource", path)
        sub = path[len(ctx) :]
        full = path
        flavour = self.config.flavour

        if sub.startswith("/lab/v1/"):
            return self.lab(method, sub, params)
        if (method == "POST" and sub in ("/v1/auth/login", "/v1/auth/users/login")) or (
            flavour == "3.x" and method == "POST" and sub == "/v3/auth/user/login"
        ):
            user = params.get("username", "")
            unknown = user not in self.config.users
            wrong = not unknown and self.config.users[user] != params.get("password")
            if flavour == "3.x" and (unknown or wrong) and "password" in params:
                # Real 3.1.0 (docs/differences.md): the v3 login refuses an unknown user with
                # Spring's 403 "Access Denied" and a wrong password with a bare 500; the v1
                # path fails in its compatibility layer either way.
                if sub == "/v3/auth/user/login":
                    if wrong:
                        raise self.spring_error(500, "No message available", full)
                    raise self.spring_error(403, "Access Denied", full)
                raise self.spring_error(
                    500, "Handle API Compatibility failed, please see log for detail.", full
                )
            status, body, extra = self.auth.login(params)
            return status, body, "json" if status == 200 else "text", extra
        if sub == "/v3/admin/core/state" and method == "GET":
            if flavour != "3.x":
                raise self.spring_error(404, "No static resource", full)
            return (*self.result({"version": self.version, "startup_mode": "standalone"}), {})
        if sub == "/v1/console/server/state" and method == "GET":
            if flavour == "3.x":
                # Real 3.1.0: the compatibility filter answers the old console path with 410.
                raise self.spring_error(
                    410, "Current API will be deprecated, use GET /v3/console/server/state", full
                )
            state: dict[str, Any] = {"version": self.version, "startup_mode": "standalone"}
            if flavour == "2.x":
                state |= {"function_mode": None, "auth_enabled": str(self.config.auth_enabled)}
            return 200, json.dumps(state), "json", {}
        if sub in ("/v1/console/health/liveness", "/v1/console/health/readiness"):
            if flavour == "3.x":
                raise self.spring_error(404, "No static resource", full)
            return 200, "OK", "text", {}
        if sub.startswith("/v3/admin/core/state/") and flavour == "3.x":
            return (*self.result("ok"), {})

        if sub.startswith("/v3/"):
            if flavour != "3.x":
                raise self.spring_error(404, "No static resource", full)
            admin = sub.startswith("/v3/admin/")
            guarded = self.config.admin_auth_enabled if admin else self.config.auth_enabled
            self.guard(guarded, headers, params, full)
            return (*self.v3(method, sub, params, full), {})
        if sub.startswith("/v2/ns/"):
            if flavour == "1.x":
                raise self.spring_error(404, "No static resource", full)
            if flavour == "3.x":
                raise self.gone(full, f"{method} {ctx}/v3/admin/ns/instance")
            self.guard(self.config.auth_enabled, headers, params, full)
            return (*self.v1v2(method, sub[len("/v2") :], params, "v2", full, headers), {})
        if sub.startswith("/v1/ns/"):
            self.guard(self.config.auth_enabled, headers, params, full)
            return (*self.v1v2(method, sub[len("/v1") :], params, "v1", full, headers), {})
        raise self.spring_error(404, "No static resource", full)

    def guard(self, on: bool, headers: dict[str, str], params: dict[str, str], path: str) -> None:
        if not on:
            return
        problem = self.auth.check(headers, params)
        if problem is not None:
            raise self.spring_error(403, problem, path)

    # --- parameters ---

    def need(self, params: dict[str, str], name: str, style: str) -> str:
        value = params.get(name)
        if value is None or value == "":
            raise self.api_error(
                style,
                400,
                10000,
                "parameter missing",
                f"Required parameter '{name}' type String is not present"
                if style != "v1"
                else f"Param '{name}' is required.",
            )
        return value

    def svc_key(self, params: dict[str, str], style: str) -> SvcKey:
        name = self.need(params, "serviceName", style)
        group = params.get("groupName") or "DEFAULT_GROUP"
        if style == "v1":
            # N 2.5.1:naming/.../web/ServiceNameFilter.java joins group and service for v1.
            if "@@" not in name:
                name = f"{group}@@{name}"
        else:
            name = f"{group}@@{name}"
        return (params.get("namespaceId") or "public", name)

    def inst_key(self, params: dict[str, str], style: str) -> InstKey:
        ip = self.need(params, "ip", style)
        try:
            port = int(self.need(params, "port", style))
        except ValueError:
            raise self.api_error(style, 400, 10000, "parameter error", "port invalid") from None
        cluster = params.get("clusterName") or params.get("cluster") or "DEFAULT"
        return (ip, port, cluster)

    def weight(self, params: dict[str, str], style: str, default: float | None) -> float | None:
        raw = params.get("weight")
        if raw is None or raw == "":
            return default
        value = float(raw)
        if not 0.0 <= value <= 10000.0:
            raise self.api_error(
                style,
                400,
                21000,
                "instance error",
                "instance format invalid: The weights range from 0.0 to 10000.0",
            )
        return value

    def enabled_param(self, params: dict[str, str]) -> str | None:
        value = params.get("enabled")
        return value if value is not None else params.get("enable")  # v1 legacy name

    # --- v1 / v2 ---

    def v1v2(
        self,
        method: str,
        sub: str,
        params: dict[str, str],
        style: str,
        full: str,
        headers: dict[str, str],
    ) -> tuple[int, str, str]:
        ok: tuple[int, str, str] = (200, "ok", "text") if style == "v1" else self.result("ok")
        flavour = self.config.flavour
        admin_call = (sub == "/ns/instance" and method in ("PUT", "PATCH", "GET")) or sub in (
            "/ns/instance/metadata/batch",
            "/ns/catalog/instances",
        )
        if flavour == "3.x" and admin_call and not self.config.compat_admin_enabled:
            raise self.gone(full, f"{method} {self.config.context_path}/v3/admin/ns/instance")
        v1_subscribers = sub == "/ns/service/subscribers" and style == "v1"
        if flavour == "3.x" and v1_subscribers and not self.config.compat_admin_enabled:
            raise self.gone(full, f"GET {self.config.context_path}/v3/admin/ns/service/subscribers")

        if sub == "/ns/service/subscribers" and method == "GET" and style == "v1":
            return self.v1_subscribers(params)
        if sub == "/ns/client/service/subscriber/list" and method == "GET" and style == "v2":
            # N 2.5.1:naming/.../controllers/v2/ClientInfoControllerV2.getSubscribeClientList
            subs = self.store.subscriber_list(self.svc_key(params, style))
            return self.result([{"clientId": c, "ip": ip, "port": port} for c, ip, port in subs])
        if sub == "/ns/instance/list" and method == "GET":
            svc = self.svc_key(params, style)
            self.store.subscribe(svc, params, headers.get("user-agent", ""))
            _, hosts = self.store.served(svc)
            visible = [h for h in hosts if h["enabled"]]  # enabled filter is unconditional
            if _bool(params.get("healthyOnly"), False):
                visible = [h for h in visible if h["healthy"]]
            clusters = [c for c in (params.get("clusters") or "").split(",") if c]
            if clusters:
                visible = [h for h in visible if h["clusterName"] in clusters]
            info = self.service_info(svc, visible, params.get("clusters") or "")
            return (200, json.dumps(info), "json") if style == "v1" else self.result(info)
        if sub == "/ns/catalog/instances" and method == "GET":
            svc = self.svc_key(params, style)
            _, hosts = self.store.served(svc)
            cluster = params.get("clusterName")
            listed = [h for h in hosts if not cluster or h["clusterName"] == cluster]
            return 200, json.dumps({"list": listed, "count": len(listed)}), "json"
        if sub == "/ns/instance/beat" and method == "PUT":
            body = {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}
            return 200, json.dumps(body), "json"
        if sub == "/ns/instance/metadata/batch" and method == "PUT":
            return self.batch_metadata(params, style)
        if sub != "/ns/instance":
            raise self.spring_error(404, "No static resource", full)

        if method == "PATCH" and style == "v2":
            return self.v2_patch(params)
        svc = self.svc_key(params, style)
        key = self.inst_key(params, style)
        if method == "POST":
            self.http_register(svc, key, params, style)
            return ok
        if method == "DELETE":
            self.http_deregister(svc, key)
            return ok
        if method == "GET":
            return self.detail(svc, key, style, full_instance=False)
        if method == "PUT":
            if flavour == "1.x":
                return self.v1x_put(svc, key, params, headers)
            self.put_record(svc, key, params, style)
            return ok
        if method == "PATCH":
            self.patch_record(svc, key, params, style, weight_default=None, enabled_default=None)
            return ok
        raise self.spring_error(405, "Method Not Allowed", full)

    def page_params(self, params: dict[str, str], style: str, size: int) -> tuple[int, int]:
        try:
            return int(params.get("pageNo") or 1), int(params.get("pageSize") or size)
        except ValueError:
            raise self.api_error(style, 400, 10000, "parameter error", "page invalid") from None

    def v1_subscribers(self, params: dict[str, str]) -> tuple[int, str, str]:
        # N 2.3.1:naming/.../controllers/ServiceController.subscribers, as real 2.3.1 answers
        # (docs/differences.md): a gRPC subscriber is listed by the IP its client reports, port
        # 0 and addrStr without a port; a v1 list caller by clientIP:udpPort. Lab consumers are
        # the latter (their management port), with a Java SDK's agent and app.
        svc = self.svc_key(params, "v1")
        page_no, page_size = self.page_params(params, "v1", 1000)
        total, page = self.store.subscriber_page(svc, page_no, page_size)
        items = [
            {
                "addrStr": f"{ip}:{port}" if port else ip,
                "agent": self.store.subscriber_agent(svc, ip, port)[0],
                "app": self.store.subscriber_agent(svc, ip, port)[1],
                "ip": ip,
                "port": port,
                "namespaceId": svc[0],
                "serviceName": svc[1],
                "cluster": "",
            }
            for ip, port in page
        ]
        return 200, json.dumps({"subscribers": items, "count": total}), "json"

    def v3_subscribers(self, params: dict[str, str]) -> tuple[int, str, str]:
        # N 3.1.0:naming/.../controllers/v3/ServiceControllerV3.subscribers: Page<SubscriberInfo>
        svc = self.svc_key(params, "v3")
        page_no, page_size = self.page_params(params, "v3", 10)
        total, page = self.store.subscriber_page(svc, page_no, page_size)
        group, name = svc[1].split("@@", 1)
        items = [
            {
                "namespaceId": svc[0],
                "groupName": group,
                "serviceName": name,
                "ip": ip,
                "port": port,
                "agent": self.store.subscriber_agent(svc, ip, port)[0],
                "appName": self.store.subscriber_agent(svc, ip, port)[1],
                "address": f"{ip}:{port}",
            }
            for ip, port in page
        ]
        pages = -(-total // page_size) if page_size > 0 else 0
        data = {
            "totalCount": total,
            "pageNumber": page_no,
            "pagesAvailable": pages,
            "pageItems": items,
        }
        return self.result(data)

    def service_info(self, svc: SvcKey, hosts: list[dict[str, Any]], clusters: str) -> Any:
        group = svc[1].split("@@", 1)[0]
        return {
            "name": svc[1],
            "groupName": group,
            "clusters": clusters,
            "cacheMillis": 10000,
            "hosts": hosts,
            "lastRefTime": int(time.time() * 1000),
            "checksum": "",
            # 3.1.0's v1 compatibility layer writes "allIps" (real server, docs/differences.md).
            "allIps" if self.config.flavour == "3.x" else "allIPs": False,
            "reachProtectionThreshold": False,
            "valid": True,
        }

    def not_found(self, svc: SvcKey, key: InstKey, style: str) -> HttpError:
        with self.store.lock:
            any_in_cluster = any(k[2] == key[2] for k in self.store.instances.get(svc, {}))
        text = (
            "no matched ip found!"
            if any_in_cluster
            else f"no ips found for cluster {key[2]} in service {svc[1]}"
        )
        return self.api_error(style, 404, 20004, "resource not found", text)

    def detail(
        self, svc: SvcKey, key: InstKey, style: str, *, full_instance: bool
    ) -> tuple[int, str, str]:
        # Detail reads come from the same cache the push task refreshes (docs/nacos.md#push-delay).
        _, hosts = self.store.served(svc)
        for h in hosts:
            if (h["ip"], h["port"], h["clusterName"]) == key:
                if full_instance:
                    return self.result(h)
                data = {
                    "service": svc[1],
                    "ip": h["ip"],
                    "port": h["port"],
                    "clusterName": h["clusterName"],
                    "weight": h["weight"],
                    "healthy": h["healthy"],
                    "instanceId": h["instanceId"],
                    "metadata": h["metadata"],
                }  # no "enabled" (N 2.5.1:.../InstanceController.detail)
                if style == "v1":
                    return 200, json.dumps(data), "json"
                return self.result({**data, "serviceName": data.pop("service")})
        raise self.not_found(svc, key, style)

    def http_register(self, svc: SvcKey, key: InstKey, params: dict[str, str], style: str) -> None:
        ephemeral = _bool(params.get("ephemeral"), True)
        owner = f"{key[0]}:{key[1]}#{str(ephemeral).lower()}"
        inst = Instance(
            ip=key[0],
            port=key[1],
            cluster=key[2],
            weight=self.weight(params, style, 1.0) or 0.0,
            enabled=_bool(self.enabled_param(params), True),
            healthy=_bool(params.get("healthy"), True),
            ephemeral=ephemeral,
            metadata=parse_metadata(params.get("metadata")),
            owner=owner,
        )
        self.store.register(svc, inst, Client(owner, "http", self.store.clock()))

    def http_deregister(self, svc: SvcKey, key: InstKey) -> None:
        with self.store.lock:
            inst = self.store.instances.get(svc, {}).get(key)
            client = self.store.clients.get(inst.owner) if inst else None
            if inst is None or (client is not None and client.kind == "grpc"):
                # N 2.5.1: the HTTP client id does not exist for a gRPC-registered instance;
                # the server logs a warning and still answers ok (issues #7070, #6274).
                return
            self.store.remove(svc, key)

    def put_record(self, svc: SvcKey, key: InstKey, params: dict[str, str], style: str) -> None:
        # N 2.5.1:naming/.../core/InstanceOperatorClientImpl.updateInstance: only the service
        # must exist; the record is replaced wholesale, even for an unregistered ip:port.
        with self.store.lock:
            if svc not in self.store.services:
                group, name = svc[1].split("@@", 1)
                text = (
                    f"service not found, namespace: {svc[0]}, service: Service{{namespace='"
                    f"{svc[0]}', group='{group}', name='{name}', ephemeral=true, revision=0}}"
                )
                raise self.api_error(style, 400, 21004, "instance error", text)
            registered = key in self.store.instances.get(svc, {})
            old = self.store.ops.get(svc, {}).get(key)
            self.store.ops.setdefault(svc, {})[key] = OpsRecord(
                enabled=_bool(self.enabled_param(params), True),
                weight=self.weight(params, style, 1.0) or 0.0,
                extend=parse_metadata(params.get("metadata")),
                # The update does not touch the expired mark (N 2.5.1 NamingMetadataManager:
                # only a re-registration clears it), so an expired record is still deleted on
                # its original schedule; an orphan record never gets a deregister event.
                expired_at=old.expired_at if old is not None else None,
            )
            if registered:
                self.store.touch(svc)

    def patch_record(
        self,
        svc: SvcKey,
        key: InstKey,
        params: dict[str, str],
        style: str,
        *,
        weight_default: float | None,
        enabled_default: bool | None,
    ) -> None:
        # N 2.5.1:.../InstanceOperatorClientImpl.patchInstance: the instance must exist; the
        # record is cloned (or a fresh one made) and patched.
        with self.store.lock:
            if key not in self.store.instances.get(svc, {}):
                raise self.not_found(svc, key, style)
            old = self.store.ops.get(svc, {}).get(key)
            rec = (
                OpsRecord(old.enabled, old.weight, dict(old.extend), old.expired_at)
                if old
                else OpsRecord()
            )
            raw_meta = params.get("metadata")
            if raw_meta is not None and raw_meta.strip():
                rec.extend = parse_metadata(raw_meta)  # replaces the map, no key merge
            weight = self.weight(params, style, weight_default)
            if weight is not None:
                rec.weight = weight
            enabled_raw = self.enabled_param(params)
            if enabled_raw is not None and enabled_raw != "":
                rec.enabled = _bool(enabled_raw, True)
            elif enabled_default is not None:
                rec.enabled = enabled_default
            self.store.ops.setdefault(svc, {})[key] = rec
            self.store.touch(svc)

    def v2_patch(self, params: dict[str, str]) -> tuple[int, str, str]:
        # N 2.5.1:.../controllers/v2/InstanceControllerV2.patch: G@@svc only; weight, enabled
        # and metadata are required @RequestParams; the answer is a bare "ok".
        for name in ("serviceName", "ip", "port", "weight", "enabled", "metadata"):
            if params.get(name) is None:
                raise self.api_error(
                    "v2",
                    400,
                    10000,
                    "parameter missing",
                    f"Required request parameter '{name}' for method parameter type "
                    f"{'double' if name == 'weight' else 'String'} is not present",
                )
        if "@@" not in params["serviceName"]:
            raise self.api_error(
                "v2",
                400,
                10000,
                "parameter error",
                f"Param 'serviceName' is illegal, illegal characters should not appear in the "
                f"param or the format is incorrect: {params['serviceName']}",
            )
        svc = (params.get("namespaceId") or "public", params["serviceName"])
        key = self.inst_key(params, "v2")
        self.patch_record(svc, key, params, "v2", weight_default=None, enabled_default=None)
        return 200, "ok", "text"

    def batch_metadata(self, params: dict[str, str], style: str) -> tuple[int, str, str]:
        svc = self.svc_key(params, style)
        extra = parse_metadata(self.need(params, "metadata", style))
        updated = []
        with self.store.lock:
            for key in self.store.instances.get(svc, {}):
                rec = self.store.ops.setdefault(svc, {}).setdefault(key, OpsRecord())
                rec.extend.update(extra)  # the one key-level merge (batchUpdateMetadata)
                updated.append(f"{key[0]}:{key[1]}:unknown:{key[2]}:ephemeral")
            self.store.touch(svc)
        body = {"updated": updated}
        return (200, json.dumps(body), "json") if style == "v1" else self.result(body)

    def v1x_put(
        self, svc: SvcKey, key: InstKey, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, str, str]:
        # N 1.4.8:naming/.../controllers/InstanceController.update: replaces the stored
        # instance; an unknown one is registered, unless the caller is a Java SDK.
        with self.store.lock:
            existing = self.store.instances.get(svc, {}).get(key)
            if existing is None and headers.get("user-agent", "").startswith("Nacos-Java-Client"):
                return 400, f"instance not exist: {key[0]}:{key[1]}", "text"
            inst = Instance(
                ip=key[0],
                port=key[1],
                cluster=key[2],
                weight=self.weight(params, "v1", 1.0) or 0.0,
                enabled=_bool(self.enabled_param(params), True),
                healthy=_bool(params.get("healthy"), True),
                ephemeral=_bool(params.get("ephemeral"), True),
                metadata=parse_metadata(params.get("metadata")),
                owner=existing.owner if existing else f"{key[0]}:{key[1]}#true",
            )
            self.store.instances.setdefault(svc, {})[key] = inst
            self.store.touch(svc)
        return 200, "ok", "text"

    # --- v3 ---

    def v3(self, method: str, sub: str, params: dict[str, str], full: str) -> tuple[int, str, str]:
        if sub == "/v3/admin/ns/service/subscribers" and method == "GET":
            return self.v3_subscribers(params)
        if sub == "/v3/admin/ns/client/service/subscriber/list" and method == "GET":
            subs = self.store.subscriber_list(self.svc_key(params, "v3"))
            data = [
                {"clientId": c, "address": f"{ip}:{port}", "agent": "Nacos-Java-Client", "app": "-"}
                for c, ip, port in subs
            ]
            return self.result(data)
        if sub == "/v3/client/ns/instance/list" and method == "GET":
            svc = self.svc_key(params, "v3")
            self.store.subscribe(svc, params)
            _, hosts = self.store.served(svc)
            cluster = params.get("clusterName")
            data = [
                h for h in hosts if h["enabled"] and (not cluster or h["clusterName"] == cluster)
            ]
            return self.result(data)
        if sub in ("/v3/client/ns/instance", "/v3/admin/ns/instance") and method == "POST":
            self.http_register(
                self.svc_key(params, "v3"), self.inst_key(params, "v3"), params, "v3"
            )
            return self.result("ok")
        if sub in ("/v3/client/ns/instance", "/v3/admin/ns/instance") and method == "DELETE":
            self.http_deregister(self.svc_key(params, "v3"), self.inst_key(params, "v3"))
            return self.result("ok")
        if sub == "/v3/admin/ns/instance" and method == "GET":
            return self.detail(
                self.svc_key(params, "v3"), self.inst_key(params, "v3"), "v3", full_instance=True
            )
        if sub == "/v3/admin/ns/instance" and method == "PUT":
            self.put_record(self.svc_key(params, "v3"), self.inst_key(params, "v3"), params, "v3")
            return self.result("ok")
        if sub == "/v3/admin/ns/instance/partial" and method == "PUT":
            # N 3.0.3:.../controllers/v3/InstanceControllerV3: InstanceForm.validate() fills
            # weight=1.0 and enabled=true when omitted, so they are never "kept".
            self.patch_record(
                self.svc_key(params, "v3"),
                self.inst_key(params, "v3"),
                params,
                "v3",
                weight_default=1.0,
                enabled_default=True,
            )
            return self.result("ok")
        if sub == "/v3/admin/ns/instance/list" and method == "GET":
            svc = self.svc_key(params, "v3")
            if svc not in self.store.services:
                raise self.api_error(
                    "v3", 404, 20004, "resource not found", f"service {svc[1]} is not found!"
                )
            _, hosts = self.store.served(svc)
            cluster = params.get("clusterName") or "DEFAULT"
            data = [h for h in hosts if h["clusterName"] == cluster]
            if _bool(params.get("healthyOnly"), False):
                data = [h for h in data if h["healthy"]]
            return self.result(data)
        raise self.spring_error(404, "No static resource", full)

    # --- lab API ---

    def lab(
        self, method: str, sub: str, params: dict[str, str]
    ) -> tuple[int, str, str, dict[str, str]]:
        parts = sub.split("/")  # ["", "lab", "v1", "clients", id, "beat"]
        if parts[3:4] == ["clients"]:
            if method == "POST" and len(parts) == 4:
                cid = self.emulator_register(params)
                return 200, json.dumps({"clientId": cid}), "json", {}
            if len(parts) >= 5:
                cid = parts[4]
                with self.store.lock:
                    client = self.store.clients.get(cid)
                    if client is None:
                        return 404, json.dumps({"error": "unknown client"}), "json", {}
                    if method == "PUT" and parts[5:6] == ["beat"]:
                        client.last_beat = self.store.clock()
                        return 200, "{}", "json", {}
                    if method == "DELETE" and len(parts) == 5:
                        self.store.drop_client(cid)
                        return 200, "{}", "json", {}
        if parts[3:4] == ["watch"] and method == "GET":
            return (*self.watch(params), {})
        raise self.spring_error(404, "No static resource", sub)

    def emulator_register(self, params: dict[str, Any]) -> str:
        svc = (
            str(params.get("namespace") or "public"),
            f"{params.get('group') or 'DEFAULT_GROUP'}@@{params['service']}",
        )
        cid = f"{int(time.time() * 1000)}_127.0.0.1_{secrets.token_hex(4)}"
        metadata = params.get("metadata")
        inst = Instance(
            ip=str(params["ip"]),
            port=int(params["port"]),
            cluster=str(params.get("cluster") or "DEFAULT"),
            weight=float(params.get("weight", 1.0)),
            enabled=bool(params.get("enabled", True)),
            healthy=bool(params.get("healthy", True)),
            ephemeral=True,
            metadata=dict(metadata)
            if isinstance(metadata, dict)
            else {"preserved.register.source": "SPRING_CLOUD"},
            owner=cid,
        )
        self.store.register(svc, inst, Client(cid, "grpc", self.store.clock()))
        return cid

    def watch(self, params: dict[str, str]) -> tuple[int, str, str]:
        svc = self.svc_key(params, "v2")
        self.store.subscribe(svc, params)
        seen = int(params.get("revision") or 0)
        timeout = min(float(params.get("timeout") or 30), 60.0)
        end = time.monotonic() + timeout
        with self.store.changed:
            while True:
                revision, hosts = self.store.cache.get(svc, (0, []))
                left = end - time.monotonic()
                if revision > seen or left <= 0:
                    break
                self.store.changed.wait(min(left, 0.5))
        info = self.service_info(svc, [h for h in hosts if h["enabled"]], "")
        info["revision"] = revision
        return 200, json.dumps(info), "json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            try:
                body = json.loads(raw)
                if isinstance(body, dict):
                    params.update(body)
            except ValueError:
                pass
        elif raw:
            params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        api = self.server.api
        extra: dict[str, str] = {}
        try:
            status, body_text, kind, extra = api.handle(self.command, parts.path, params, headers)
            content_type = "application/json" if kind == "json" else "text/plain;charset=UTF-8"
        except HttpError as exc:
            status, body_text, content_type = exc.status, exc.body, exc.content_type
        except (KeyError, ValueError, TypeError) as exc:
            status, body_text, content_type = 400, f"bad request: {exc}", "text/plain"
        self.server.emulator.record(self.command, parts.path, params, status)
        if status == BROKEN_ANSWER:
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 0 \r\n\r\n")
            return
        data = body_text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: Api
    emulator: NacosEmulator


_SECRET_PARAMS = ("password", "accessToken")


class NacosEmulator(LoopbackServer):
    """A Nacos server on loopback; use as a context manager or start()/stop()."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.config = config or EmulatorConfig()
        self.clock = clock
        self._last_clean = clock()
        self.store = Store(self.config, clock)
        self.auth = Auth(self.config, clock)
        self.api = Api(self.config, self.store, self.auth)
        self.requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.api = self.api
        self._server.emulator = self

    def tick(self) -> None:
        self.store.tick()
        if self.clock() - self._last_clean >= self.config.cleaner_interval:
            self.store.clean()
            self._last_clean = self.clock()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    # --- lab control ---

    def register(
        self,
        service: str,
        ip: str,
        port: int,
        *,
        namespace: str = "public",
        group: str = "DEFAULT_GROUP",
        cluster: str = "DEFAULT",
        weight: float = 1.0,
        metadata: dict[str, str] | None = None,
        enabled: bool = True,
        healthy: bool = True,
    ) -> str:
        """Register like a Spring Cloud Alibaba app's gRPC client; returns its client id."""
        params: dict[str, Any] = {
            "service": service,
            "ip": ip,
            "port": port,
            "namespace": namespace,
            "group": group,
            "cluster": cluster,
            "weight": weight,
            "enabled": enabled,
            "healthy": healthy,
        }
        if metadata is not None:
            params["metadata"] = metadata
        return self.api.emulator_register(params)

    def deregister(self, client_id: str) -> None:
        self.store.drop_client(client_id)

    def disconnect(self, client_id: str) -> None:
        self.store.drop_client(client_id)

    def beat(self, client_id: str) -> None:
        with self.store.lock:
            client = self.store.clients.get(client_id)
            if client is not None:
                client.last_beat = self.clock()

    def admin_view(
        self, service: str, *, namespace: str = "public", group: str = "DEFAULT_GROUP"
    ) -> list[dict[str, Any]]:
        return self.store.live((namespace, f"{group}@@{service}"))

    def consumer_view(
        self, service: str, *, namespace: str = "public", group: str = "DEFAULT_GROUP"
    ) -> list[dict[str, Any]]:
        _, hosts = self.store.served((namespace, f"{group}@@{service}"))
        return [h for h in hosts if h["enabled"]]

    def ops_record(
        self,
        service: str,
        ip: str,
        port: int,
        *,
        namespace: str = "public",
        group: str = "DEFAULT_GROUP",
        cluster: str = "DEFAULT",
    ) -> dict[str, Any] | None:
        with self.store.lock:
            rec = self.store.ops.get((namespace, f"{group}@@{service}"), {}).get(
                (ip, port, cluster)
            )
            if rec is None:
                return None
            return {
                "enabled": rec.enabled,
                "weight": rec.weight,
                "extendData": dict(rec.extend),
                "expired_at": rec.expired_at,
            }

    def expire_tokens(self) -> None:
        self.auth.expire_all()

    def set_down(self, down: bool) -> None:
        self.api.down = down

    def record(self, method: str, path: str, params: dict[str, Any], status: int) -> None:
        shown = {k: ("***" if k in _SECRET_PARAMS else str(v)) for k, v in params.items()}
        with self._requests_lock:
            self.requests.append(RequestRecord(method, path, shown, status))

    def writes(self) -> list[RequestRecord]:
        """Writes to the naming instance endpoints (not logins, not lab calls)."""
        with self._requests_lock:
            return [
                r
                for r in self.requests
                if r.method in ("POST", "PUT", "PATCH", "DELETE")
                and "/ns/instance" in r.path
                and not r.path.endswith("/beat")
            ]


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m prestop_lab.nacos_emulator")
    parser.add_argument("--port", type=int, default=8848)
    parser.add_argument("--flavour", choices=["1.x", "2.x", "3.x"], default="2.x")
    parser.add_argument("--auth", action="store_true")
    parser.add_argument("--user", action="append", default=[], help="name:password")
    parser.add_argument("--push-delay", type=float, default=0.5)
    parser.add_argument("--metadata-expiry", type=float, default=60.0)
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user) or {"nacos": "nacos"}
    config = EmulatorConfig(
        flavour=args.flavour,
        auth_enabled=args.auth,
        users=users,
        push_delay=args.push_delay,
        metadata_expiry=args.metadata_expiry,
    )
    emulator = NacosEmulator(config, port=args.port)
    emulator.start()
    print(f"NACOS_EMULATOR_READY url={emulator.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emulator.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
