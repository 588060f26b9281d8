"""The Nacos adapter: take one instance out of service and back, and read what consumers see.

How each version is written is in :mod:`agent.registry.nacos.writes`; how answers are read in
:mod:`agent.registry.nacos.answers`; the transport in :mod:`agent.registry.nacos.http`.
"""

from __future__ import annotations

from typing import Any

from agent.addresses import same_ip
from agent.config import NacosSettings
from agent.consumers import Subscriber
from agent.deadline import Deadline
from agent.exceptions import (
    AgentError,
    InstanceNotFound,
    RegistryError,
    RegistryUnavailable,
    json_of,
)
from agent.logs import get_logger
from agent.registry import InstanceState, TakeOut
from agent.registry.nacos.answers import (
    instance_state,
    metadata_kept,
    ok_json,
    subscribers_of,
    to_int,
    write_method,
)
from agent.registry.nacos.http import NacosHttp, ServerInfo
from agent.registry.nacos.writes import write

log = get_logger()

SUBSCRIBER_PAGE = 500  # one page; a longer list is refused rather than read in part


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
        return same_ip(host.get("ip"), self._s.ip) and to_int(host.get("port")) == self._s.port

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
            body = ok_json(r, "GET /v3/admin/ns/instance")
            data = body.get("data") if isinstance(body, dict) else None
            return self._state(data) if isinstance(data, dict) else None
        r = self._http.request("GET", "/v1/ns/instance", deadline, params=self._ids())
        if r.status_code in (400, 404):
            # 404 "no matched ip found!" / "no ips found for cluster"; 400 "service not found".
            return None
        if r.status_code == 410:
            return self._retry_as_v3(deadline)
        data = ok_json(r, "GET /v1/ns/instance")
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
            body = ok_json(r, "GET /v3/client/ns/instance/list")
            hosts = body.get("data") if isinstance(body, dict) else None
        else:
            r = self._http.request(
                "GET", "/v1/ns/instance/list", deadline, params={**params, "healthyOnly": "false"}
            )
            body = ok_json(r, "GET /v1/ns/instance/list")
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
        body = ok_json(r, f"GET {path}")
        page = body.get("data") if server.major >= 3 and isinstance(body, dict) else body
        return subscribers_of(page, key, f"GET {path}")

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
            method = write(self._http, self._ids(), before, enabled, server, deadline)
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
        return TakeOut(before, after, server.version, method, already_out=already)

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
        method = write_method(server.major)
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
            before, after, server.version, method, already_out=already, write_unconfirmed=True
        )

    def _check_fields(self, before: InstanceState, after: InstanceState | None) -> None:
        if after is None:
            # Gone between our write and the read-back (the app deregistered itself): fine.
            log.info("instance_gone_after_write", instance=self._s.instance)
        elif after.weight != before.weight or not metadata_kept(before.metadata, after.metadata):
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
        write(
            self._http,
            self._ids(),
            before,
            None,
            self._http.detect(deadline),
            deadline,
            weight=weight,
        )
        return before

    def _state(self, data: dict[str, Any]) -> InstanceState:
        return instance_state(data, self._s.ip, self._s.port, self._s.cluster)
