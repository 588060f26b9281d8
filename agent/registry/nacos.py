"""Nacos over its HTTP OpenAPI (1.x, 2.x and 3.x), with httpx.

How each server version is driven (facts in ``docs/nacos.md``):

* 2.x: ``PATCH /v1/ns/instance`` with ``enabled`` and the current weight. PATCH needs the instance
  to exist and leaves metadata alone; a first PATCH starts from an ops record whose weight is 1.0,
  hence the weight read first and sent back.
* 3.x: ``PUT /v3/admin/ns/instance/partial``. It defaults an omitted weight to 1.0, so the current
  weight is read first and sent back.
* 1.x: ``PUT /v1/ns/instance`` replaces the whole record, so every current field is sent back.

Before any write the instance is read; an unknown ip:port raises :class:`InstanceNotFound`
because a write for it would leave a record that never expires and later disables a new pod.
The token goes in headers (never in URLs, which end up in access logs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import httpx

from agent.addresses import same_ip
from agent.config import NacosSettings
from agent.consumers import Subscriber
from agent.deadline import Clock, Deadline
from agent.exceptions import (
    HTTP_FAILURES,
    AgentError,
    AuthError,
    DeadlineExceeded,
    InstanceNotFound,
    RegistryError,
    RegistryRejected,
    RegistryUnavailable,
    json_of,
)
from agent.logs import get_logger
from agent.registry import InstanceState, TakeOut

log = get_logger()

# Statuses after which another server of the cluster may do better (gateway/proxy or a node
# that is starting: "server is DOWNnow", N 2.5.1:naming/.../naming/web/TrafficReviseFilter.java).
_FAILOVER_STATUSES = frozenset({502, 503, 504})
_TOKEN_REFRESH_MARGIN = 0.9  # log in again after 90 % of tokenTtl
_BODY_SNIPPET = 200
SUBSCRIBER_PAGE = 500  # one page; a longer list is refused rather than read in part


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text.strip().replace("\n", " ")
    except (ValueError, LookupError, httpx.HTTPError):
        return "(unreadable body)"
    return text[:_BODY_SNIPPET]


def _major(version: str) -> int | None:
    head = version.strip().lstrip("vV").split(".", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class ServerInfo:
    version: str
    major: int  # 1, 2 or 3


class NacosHttp:
    """Requests to a Nacos cluster: fail-over across addresses, token handling, bounded timeouts."""

    def __init__(
        self,
        settings: NacosSettings,
        http: httpx.Client,
        clock: Clock,
        *,
        http_timeout: float = 3.0,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._http_timeout = http_timeout
        self._current = 0
        self._token: str | None = None
        self._token_expires = 0.0
        self.server: ServerInfo | None = None

    # --- transport ---

    def _send(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, trying each server once, starting with the last one that answered."""
        servers = self._settings.servers
        errors: list[str] = []
        for offset in range(len(servers)):
            timeout = deadline.timeout(self._http_timeout)
            if timeout <= 0.01:
                raise DeadlineExceeded(f"no time left for {method} {path}")
            index = (self._current + offset) % len(servers)
            url = servers[index].base_url + path
            try:
                response = self._http.request(
                    method, url, params=params, data=data, headers=headers, timeout=timeout
                )
            except HTTP_FAILURES as exc:
                # Transport errors, a bad gzip body, a host that fails IDNA encoding.
                errors.append(f"{servers[index]}: {type(exc).__name__}")
                continue
            if response.status_code in _FAILOVER_STATUSES:
                errors.append(f"{servers[index]}: HTTP {response.status_code}")
                continue
            self._current = index
            return response
        raise RegistryUnavailable(
            f"{method} {path} failed on every server ({'; '.join(errors)})",
            protocol_errors_only=bool(errors) and all("RemoteProtocolError" in e for e in errors),
        )

    def request(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """An authenticated request; logs in again once when the token is refused."""
        self.ensure_token(deadline)
        response = self._send(method, path, deadline, params=params, headers=self._auth_headers())
        if response.status_code == 403 and self._has_credentials():
            # Expired or invalid token (e.g. the server's secret rotated): one fresh login.
            log.info("registry_relogin", reason=_snippet(response))
            self._token = None
            self.ensure_token(deadline)
            response = self._send(
                method, path, deadline, params=params, headers=self._auth_headers()
            )
        if response.status_code == 403:
            hint = "" if self._has_credentials() else "; set --username and --password-file"
            raise AuthError(f"{method} {path} refused: {_snippet(response)}{hint}")
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"{method} {path} -> HTTP {response.status_code}: {_snippet(response)}"
            )
        return response

    # --- auth ---

    def _has_credentials(self) -> bool:
        return self._settings.username is not None and self._settings.password is not None

    def _auth_headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        # Authorization: Bearer is read by 1.x, 2.x and 3.x; the accessToken header by 2.x/3.x
        # (N 2.5.1:auth/.../context/HttpIdentityContextBuilder.java, 1.4.8 NacosAuthManager).
        return {"Authorization": f"Bearer {self._token}", "accessToken": self._token}

    def ensure_token(self, deadline: Deadline) -> None:
        if not self._has_credentials():
            return
        if self._token is not None and self._clock.now() < self._token_expires:
            return
        self._login(deadline)

    def _login(self, deadline: Deadline) -> None:
        server = self.detect(deadline)
        paths = ["/v1/auth/users/login"]
        if server.major >= 3:
            # 3.x Java SDK tries v3 first and falls back to v1 on 404/501 (HttpLoginProcessor).
            paths.insert(0, "/v3/auth/user/login")
        form = {"username": self._settings.username, "password": self._settings.password}
        user = self._settings.username
        refused = (
            f"login refused for user {user!r}: {{}}; "
            "check --username and the password (NACOS_PASSWORD / --password-file)"
        )
        response: httpx.Response | None = None
        for path in paths:
            try:
                response = self._send("POST", path, deadline, data=form)
            except RegistryUnavailable as exc:
                # The server answered the version query a moment ago. Nacos 2.3 answers a wrong
                # password with a broken status line (``HTTP/1.1 0``, no body), seen on the real
                # server; retrying that until the budget is gone would only hide the cause.
                if exc.protocol_errors_only:
                    raise AuthError(refused.format("the server broke the answer off")) from None
                raise
            if response.status_code not in (404, 405, 410, 501):
                break
        assert response is not None
        if response.status_code == 200:
            try:
                body = json_of(response)
                token = str(body["accessToken"])
                ttl = float(body.get("tokenTtl", 18000))
            except (ValueError, KeyError, TypeError, OverflowError):
                raise RegistryRejected(
                    f"login answered 200 without a token: {_snippet(response)}"
                ) from None
            self._token = token
            if not math.isfinite(ttl):
                ttl = 18000.0
            self._token_expires = self._clock.now() + ttl * _TOKEN_REFRESH_MARGIN
            log.info("registry_login", username=user, token_ttl=ttl)
            return
        if response.status_code in (401, 403) or (
            response.status_code == 500
            and (server.major >= 3 or "not found" in response.text.lower())
        ):
            # 2.x/3.x answer an unknown user with 500 "caused: User x not found;" (#15682), and
            # the real 3.1 server a wrong password with a bare 500 ("No message available") on
            # both login paths: on 3.x a 500 from the login is a refusal, not an outage.
            raise AuthError(refused.format(_snippet(response)))
        if response.status_code >= 500:
            raise RegistryUnavailable(f"login -> HTTP {response.status_code}: {_snippet(response)}")
        raise RegistryRejected(f"login -> HTTP {response.status_code}: {_snippet(response)}")

    # --- version ---

    def detect(self, deadline: Deadline) -> ServerInfo:
        """The server's version: ``/v3/admin/core/state``, else ``/v1/console/server/state``."""
        if self.server is not None:
            return self.server
        response = self._send("GET", "/v3/admin/core/state", deadline)
        if response.status_code == 200:
            try:
                data = json_of(response).get("data") or {}
                version = str(data.get("version") or "3")
            except (ValueError, AttributeError):
                version = "3"
            self.server = ServerInfo(version, _major(version) or 3)
        else:
            response = self._send("GET", "/v1/console/server/state", deadline)
            version = ""
            if response.status_code == 200:
                try:
                    version = str(json_of(response).get("version") or "")
                except (ValueError, AttributeError):
                    version = ""
            if response.status_code >= 500:
                raise RegistryUnavailable(f"server state -> HTTP {response.status_code}")
            major = _major(version) if version else None
            if major is None:
                # Neither endpoint said: assume 2.x, the most widespread, and say so.
                log.warning("registry_version_unknown", assumed="2.x")
                version, major = version or "unknown", 2
            self.server = ServerInfo(version, major)
        log.info("registry_version_detected", version=self.server.version, major=self.server.major)
        return self.server


class NacosRegistry:
    """Takes one instance out of service and back; reads it as consumers and admins see it."""

    name = "nacos"
    cleans_up_after_stop = False

    def __init__(self, settings: NacosSettings, http: NacosHttp) -> None:
        self._s = settings
        self._http = http
        # The IP as the registry spells it, when that differs from ours (IPv6: fd00::1 is
        # fd00:0:0:0:0:0:0:1 when Java registered it).
        self._registered_ip: str | None = None
        # The enabled value of our last write whose answer was lost (None: none pending).
        self._unanswered: bool | None = None

    # --- parameters ---

    def _service_params(self) -> dict[str, Any]:
        s = self._s
        return {"namespaceId": s.namespace, "groupName": s.group, "serviceName": s.service}

    def _ids(self) -> dict[str, Any]:
        s = self._s
        # Nacos looks an instance up by the exact text it was registered with.
        ip = self._registered_ip or s.ip
        return {**self._service_params(), "clusterName": s.cluster, "ip": ip, "port": s.port}

    def _is_us(self, host: dict[str, Any]) -> bool:
        return same_ip(host.get("ip"), self._s.ip) and _int(host.get("port")) == self._s.port

    # --- reads ---

    def connect(self, deadline: Deadline) -> str:
        """Reach the server and log in (when credentials are set); say what answered."""
        server = self._http.detect(deadline)
        self._http.ensure_token(deadline)
        login = f", logged in as {self._s.username!r}" if self._s.username else ", no login"
        return f"Nacos {server.version} (API {server.major}.x){login}"

    def describe_instance(self) -> str:
        s = self._s
        return f"{s.instance} in {s.group}@@{s.service} (namespace {s.namespace})"

    def get_instance(self, deadline: Deadline) -> InstanceState | None:
        """The admin view of our instance, or None when it is not registered."""
        state = self._detail(deadline)
        if state is None and self._registered_ip is None and ":" in self._s.ip:
            spelled = self._registered_spelling(deadline)
            if spelled is not None and spelled != self._s.ip:
                self._registered_ip = spelled
                state = self._detail(deadline)
        return state

    def _registered_spelling(self, deadline: Deadline) -> str | None:
        """Our IP as the admin list spells it (found by value, disabled ones too), or None."""
        server = self._http.detect(deadline)
        if server.major >= 3:
            path, key = "/v3/admin/ns/instance/list", "data"
            params: dict[str, Any] = self._service_params()
        else:
            path, key = "/v1/ns/catalog/instances", "list"
            params = {**self._service_params(), "clusterName": self._s.cluster}
            params |= {"pageNo": 1, "pageSize": 1000}
        try:
            body = json_of(self._http.request("GET", path, deadline, params=params))
        except (ValueError, RegistryError):
            return None
        hosts = body.get(key) if isinstance(body, dict) else None
        for host in hosts if isinstance(hosts, list) else []:
            if isinstance(host, dict) and self._is_us(host):
                return str(host.get("ip"))
        return None

    def _detail(self, deadline: Deadline) -> InstanceState | None:
        server = self._http.detect(deadline)
        if server.major >= 3:
            r = self._http.request("GET", "/v3/admin/ns/instance", deadline, params=self._ids())
            if r.status_code in (400, 404):
                return None
            body = self._ok_json(r, "GET /v3/admin/ns/instance")
            data = body.get("data") if isinstance(body, dict) else None
            return self._state(data) if isinstance(data, dict) else None
        r = self._http.request("GET", "/v1/ns/instance", deadline, params=self._ids())
        if r.status_code in (400, 404):
            # 404 "no matched ip found!" / "no ips found for cluster"; 400 "service not found".
            return None
        if r.status_code == 410:
            return self._retry_as_v3(deadline)
        data = self._ok_json(r, "GET /v1/ns/instance")
        if not isinstance(data, dict):
            return None
        state = self._state(data)
        if server.major <= 2:
            # The v1 detail has no `enabled`; the console catalog does (best effort).
            enabled = self._catalog_enabled(deadline)
            if enabled is not None:
                state = InstanceState(**{**state.__dict__, "enabled": enabled})
        return state

    def _retry_as_v3(self, deadline: Deadline) -> InstanceState | None:
        # A 410 means a 3.x server whose state endpoint we could not read: switch APIs.
        self._http.server = ServerInfo("3 (from HTTP 410)", 3)
        return self.get_instance(deadline)

    def _catalog_enabled(self, deadline: Deadline) -> bool | None:
        params = {
            "namespaceId": self._s.namespace,
            "groupName": self._s.group,
            "serviceName": self._s.service,
            "clusterName": self._s.cluster,
            "pageNo": 1,
            "pageSize": 1000,
        }
        try:
            r = self._http.request("GET", "/v1/ns/catalog/instances", deadline, params=params)
            hosts = json_of(r).get("list", []) if r.status_code == 200 else []
        except (ValueError, AttributeError, RegistryError):
            return None
        for host in hosts if isinstance(hosts, list) else []:
            if isinstance(host, dict) and self._is_us(host) and "enabled" in host:
                return bool(host["enabled"])
        return None

    def visible_to_consumers(self, deadline: Deadline) -> bool:
        """Whether a consumer's instance list (enabled-only, server-filtered) contains us."""
        server = self._http.detect(deadline)
        params = self._service_params()
        if server.major >= 3:
            r = self._http.request("GET", "/v3/client/ns/instance/list", deadline, params=params)
            if r.status_code == 404:
                return False
            body = self._ok_json(r, "GET /v3/client/ns/instance/list")
            hosts = body.get("data") if isinstance(body, dict) else None
        else:
            r = self._http.request(
                "GET", "/v1/ns/instance/list", deadline, params={**params, "healthyOnly": "false"}
            )
            body = self._ok_json(r, "GET /v1/ns/instance/list")
            hosts = body.get("hosts") if isinstance(body, dict) else None
        for host in hosts if isinstance(hosts, list) else []:
            # Consumers (Java SDK, SCA) also drop disabled hosts themselves.
            if isinstance(host, dict) and self._is_us(host) and host.get("enabled", True):
                return True
        return False

    def subscribers(self, deadline: Deadline) -> list[Subscriber] | None:
        """Every client subscribed to the service, cluster-wide; None: this server cannot say.

        The per-node client lists (2.x ``/v2/ns/client/service/subscriber/list``, 3.x
        ``/v3/admin/ns/client/...``) show only the clients connected to the node asked, so on
        a cluster they miss most consumers. These ask every member (``aggregation=true``).
        """
        server = self._http.detect(deadline)
        s = self._s
        if server.major >= 3:
            path, key = "/v3/admin/ns/service/subscribers", "pageItems"
            params: dict[str, Any] = {**self._service_params(), "pageSize": SUBSCRIBER_PAGE}
        elif server.major == 2:
            path, key = "/v1/ns/service/subscribers", "subscribers"
            # This v1 endpoint matches the grouped name; it has no groupName parameter.
            params = {"namespaceId": s.namespace, "serviceName": f"{s.group}@@{s.service}"}
            params["pageSize"] = SUBSCRIBER_PAGE
        else:
            return None  # 1.x lists UDP push targets only per node, and no gRPC clients
        params |= {"pageNo": 1, "aggregation": "true"}
        r = self._http.request("GET", path, deadline, params=params)
        if r.status_code in (404, 405, 410, 501):
            return None
        body = self._ok_json(r, f"GET {path}")
        page = body.get("data") if server.major >= 3 and isinstance(body, dict) else body
        items = page.get(key) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise RegistryError(f"GET {path}: no {key} list in the answer")
        total = page.get("totalCount", page.get("count")) if isinstance(page, dict) else None
        if isinstance(total, int) and total > len(items):
            # More than one page: the list would be incomplete, and knowledge must be whole.
            raise RegistryError(f"GET {path}: {total} subscribers, more than one page")
        out: list[Subscriber] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            ip, port = item.get("ip"), item.get("port")
            if not ip and isinstance(item.get("address") or item.get("addrStr"), str):
                ip, _, port = str(item.get("address") or item.get("addrStr")).rpartition(":")
            if ip:
                agent = item.get("agent")
                out.append(
                    Subscriber(
                        str(item.get("clientId", "")),
                        str(ip),
                        _int(port) or 0,
                        agent if isinstance(agent, str) else "",
                    )
                )
        return out

    def status(self, deadline: Deadline) -> dict[str, Any]:
        admin = self.get_instance(deadline)
        server = self._http.detect(deadline)
        return {
            "registry": self.name,
            "server_version": server.version,
            "service": f"{self._s.group}@@{self._s.service}",
            "namespace": self._s.namespace,
            "instance": self._s.instance,
            "registered": admin is not None,
            "admin_view": None
            if admin is None
            else {**admin.summary(), "metadata": admin.metadata},
            "consumer_visible": self.visible_to_consumers(deadline),
        }

    def serving(self, deadline: Deadline) -> bool:
        """Readiness: consumers' lists have the instance (registered, enabled, healthy)."""
        return self.visible_to_consumers(deadline)

    def after_stop(self, deadline: Deadline) -> str | None:
        # The app deregisters itself; an HTTP DELETE is a no-op for its gRPC-owned instance.
        return None

    # --- writes ---

    def take_out(self, deadline: Deadline) -> TakeOut:
        return self._set_enabled(False, deadline)

    def put_back(self, deadline: Deadline) -> TakeOut:
        return self._set_enabled(True, deadline)

    def _set_enabled(self, enabled: bool, deadline: Deadline) -> TakeOut:
        before = self.get_instance(deadline)
        if before is None:
            raise InstanceNotFound(
                f"instance {self._s.instance} is not registered in {self._s.group}@@"
                f"{self._s.service} (namespace {self._s.namespace}, cluster {self._s.cluster}); "
                "nothing was written"
            )
        server = self._http.detect(deadline)
        # A retry after a write whose answer was lost finds the instance as that write left it:
        # that is our doing, not "already out".
        already = before.enabled is enabled and self._unanswered is not enabled
        try:
            method = self._write(before, enabled, server, deadline)
        except RegistryUnavailable as lost:
            # A timeout or a dropped connection after sending says nothing about the write.
            self._unanswered = enabled
            return self._read_back_lost_write(lost, before, enabled, already, server, deadline)
        self._unanswered = None
        try:
            after = self.get_instance(deadline)
        except AgentError as exc:
            # The write was answered, so it is done; only the check of weight and metadata is
            # lost. Failing here would report a landed write as failed and retry it.
            log.warning("registry_read_back_failed", method=method, error_type=type(exc).__name__)
            after = None
        else:
            self._check_fields(before, after)
        return TakeOut(
            before=before,
            after=after,
            server_version=server.version,
            method=method,
            already_out=already,
        )

    def _read_back_lost_write(
        self,
        lost: RegistryUnavailable,
        before: InstanceState,
        enabled: bool,
        already: bool,
        server: ServerInfo,
        deadline: Deadline,
    ) -> TakeOut:
        """The write's answer never came: the instance already in the wanted state counts as
        done (``write_unconfirmed``); otherwise, or unreadable, ``lost`` is raised (retried)."""
        method = _write_method(server.major)
        try:
            after = self.get_instance(deadline)
        except AgentError as exc:
            log.warning("registry_write_lost", method=method, read_back=type(exc).__name__)
            raise lost from None
        if after is None or after.enabled is not enabled:
            seen = "not registered" if after is None else f"enabled={after.enabled}"
            log.warning("registry_write_lost", method=method, read_back=seen)
            raise lost
        log.warning("registry_write_unconfirmed", method=method, enabled=enabled)
        self._check_fields(before, after)
        return TakeOut(
            before=before,
            after=after,
            server_version=server.version,
            method=method,
            already_out=already,
            write_unconfirmed=True,
        )

    def _check_fields(self, before: InstanceState, after: InstanceState | None) -> None:
        if after is None:
            # Gone between our write and the read-back (the app deregistered itself): fine.
            log.info("instance_gone_after_write", instance=self._s.instance)
        elif after.weight != before.weight or not _metadata_kept(before.metadata, after.metadata):
            log.warning(
                "instance_fields_changed",
                weight_before=before.weight,
                weight_after=after.weight,
                metadata_keys_before=sorted(before.metadata),
                metadata_keys_after=sorted(after.metadata),
            )

    def set_weight(self, weight: float, deadline: Deadline) -> InstanceState:
        """Change only the weight (warm-up); enabled, metadata and the rest stay as they are."""
        before = self.get_instance(deadline)
        if before is None:
            raise InstanceNotFound(f"instance {self._s.instance} is not registered")
        self._write(before, None, self._http.detect(deadline), deadline, weight=weight)
        return before

    def _write(
        self,
        before: InstanceState,
        enabled: bool | None,
        server: ServerInfo,
        deadline: Deadline,
        *,
        weight: float | None = None,
    ) -> str:
        """One write of enabled (None: unchanged) and weight (None: the current one)."""
        weight = before.weight if weight is None else weight
        ids = {**self._ids(), "clusterName": before.cluster}
        if enabled is None and server.major != 2:
            # 3.x /partial and 1.x PUT reset an omitted enabled to true: send the current one.
            if before.enabled is None:
                raise RegistryRejected("cannot tell whether the instance is enabled")
            enabled = before.enabled
        flags = {} if enabled is None else {"enabled": "true" if enabled else "false"}
        if server.major >= 3:
            params: dict[str, Any] = {**ids, **flags, "weight": weight}
            if before.ephemeral is not None:
                params["ephemeral"] = "true" if before.ephemeral else "false"
            # N 3.0.3:naming/.../controllers/v3/InstanceControllerV3.java: /partial calls
            # InstanceForm.validate(), which defaults an omitted weight to 1.0.
            method = _write_method(3)
            r = self._http.request("PUT", "/v3/admin/ns/instance/partial", deadline, params=params)
        elif server.major == 2:
            # PATCH clones the ops record, or starts from a fresh one whose weight is 1.0
            # (N 2.5.1:naming/.../core/v2/metadata/InstanceMetadata.java, weight = 1.0D):
            # without an explicit weight a weight-3 instance would silently drop to 1.
            method = _write_method(2)
            r = self._http.request(
                "PATCH", "/v1/ns/instance", deadline, params={**ids, **flags, "weight": weight}
            )
            if r.status_code == 410:
                self._http.server = ServerInfo("3 (from HTTP 410)", 3)
                return self._write(before, enabled, self._http.server, deadline, weight=weight)
        else:
            # 1.x PUT replaces the stored instance, so everything we read goes back unchanged.
            params = {
                **ids,
                **flags,
                "weight": weight,
                "metadata": json.dumps(before.metadata, separators=(",", ":")),
            }
            if before.ephemeral is not None:
                params["ephemeral"] = "true" if before.ephemeral else "false"
            if before.healthy is not None:
                params["healthy"] = "true" if before.healthy else "false"
            method = _write_method(1)
            r = self._http.request("PUT", "/v1/ns/instance", deadline, params=params)
        if r.status_code == 404:
            raise InstanceNotFound(
                f"{method}: instance {self._s.instance} vanished before the write"
            )
        if r.status_code >= 400:
            raise RegistryRejected(f"{method} -> HTTP {r.status_code}: {_snippet(r)}")
        log.info(
            "registry_write",
            method=method,
            enabled=enabled,
            weight=weight,
            server_version=server.version,
        )
        return method

    # --- helpers ---

    def _ok_json(self, r: httpx.Response, what: str) -> Any:
        if r.status_code >= 400:
            raise RegistryRejected(f"{what} -> HTTP {r.status_code}: {_snippet(r)}")
        try:
            return json_of(r)
        except ValueError as exc:
            raise RegistryRejected(f"{what} answered {exc}: {_snippet(r)[:80]}") from None

    def _state(self, data: dict[str, Any]) -> InstanceState:
        metadata = data.get("metadata") or {}
        return InstanceState(
            ip=str(data.get("ip", self._s.ip)),
            port=_int(data.get("port")) or self._s.port,
            cluster=str(data.get("clusterName") or self._s.cluster),
            weight=_weight(data.get("weight", 1.0)),
            metadata={str(k): str(v) for k, v in metadata.items()}
            if isinstance(metadata, dict)
            else {},
            enabled=_opt_bool(data.get("enabled")),
            healthy=_opt_bool(data.get("healthy")),
            ephemeral=_opt_bool(data.get("ephemeral")),
        )


def _write_method(major: int) -> str:
    """The call that writes an instance on this major version (as logged and reported)."""
    if major >= 3:
        return "PUT /v3/admin/ns/instance/partial"
    return "PATCH /v1/ns/instance" if major == 2 else "PUT /v1/ns/instance"


def _metadata_kept(before: dict[str, str], after: dict[str, str]) -> bool:
    return all(after.get(k) == v for k, v in before.items())


def _weight(value: object) -> float:
    """A weight as Nacos writes it (a number, or a numeric string); anything else is refused,
    because the take-out writes the weight back."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            weight = float(value)
        except (ValueError, OverflowError):
            weight = math.nan
        if math.isfinite(weight) and weight >= 0:
            return weight
    raise RegistryRejected(f"the instance's weight is not a number: {str(value)[:40]!r}")


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _opt_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None
