"""Differential checks: one scripted sequence sent to an emulator and to the real server.

Each sequence is data (:class:`Call` rows). :func:`run_sequence` sends it to a :class:`Target`
(an emulator or a real server on loopback) and returns one :class:`Result` per call;
:func:`compare` puts the two result lists side by side and returns :class:`Diff` rows:

* ``status``: the HTTP status codes must be equal;
* ``kind``: the body kind (``json``, ``xml``, ``text``, ``empty``) must be equal;
* ``until``: a polled condition (the real servers apply writes asynchronously) must be met on
  both within the call's bound;
* ``read <path>``: every field the agent reads (``agent/registry/nacos/``,
  ``agent/registry/eureka/``) must be present with the same JSON type on both;
* ``value <path>``: the fields whose values matter must be equal;
* ``text <s>``: a substring the agent matches on must be in both bodies or in neither;
* ``keys <path>``: other keys present on one side only; shown, never a failure.

Tolerances (by design, not listed per difference): values that legitimately differ between
two servers (tokens, timestamps, instance/client ids, ports, dirty timestamps, version strings,
delta version counters, hash codes) are compared by presence and type only, never by value;
JSON ``int`` and ``float`` are one type (``number``), since every reader converts with
``float()``/``int()``; a list is compared through the element that is *our* instance (``[us]``,
by ip and port, or by instance id), never by position.

A difference is either fixed in the emulator or listed in :data:`KNOWN` with its reason;
:func:`unlisted` returns the rest (the CLI exits 1 and the tests fail on them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    pass

Registry = Literal["nacos", "eureka"]
Auth = Literal["token", "none", "garbage", "expired"]

# The instance the sequences register (nothing listens there; no health check reaches it).
CONTEXT: dict[str, str] = {
    "service": "diff-svc",
    "ip": "10.9.8.7",
    "port": "18080",
    "ghost_ip": "10.9.8.250",
    "app": "DIFFAPP",
    "id": "10.9.8.7:diffapp:18080",
    "ghost_id": "10.9.8.250:diffapp:1",
}
MISSING = "<missing>"
_runs = itertools.count(1)


def fresh_context() -> dict[str, str]:
    """CONTEXT with a port (and so an instance id) not used by a recent run.

    A disabled Nacos instance's ops record outlives its deregistration by ~60 s and applies to a
    re-registration of the same ip:port (docs/nacos.md#stale-disabled-record-after-a-restart),
    so a second run on the same server must not reuse the ip:port.
    """
    port = str(20000 + 40 * secrets.randbelow(1000) + next(_runs) % 40)
    return {**CONTEXT, "port": port, "id": f"{CONTEXT['ip']}:diffapp:{port}"}


@dataclass(frozen=True)
class Call:
    """One request of a sequence, what to compare in its answer, and an optional poll."""

    step: str
    method: str
    path: str  # after the target's base URL; ``{name}`` filled from CONTEXT
    params: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    body: Any = None  # JSON body
    auth: Auth = "token"
    accept: Literal["json", "xml"] = "json"
    reads: tuple[str, ...] = ()  # presence and type must match
    values: tuple[str, ...] = ()  # values must match
    contains: tuple[str, ...] = ()  # substrings of the body the agent matches on
    until: tuple[str, str, Any] | None = None  # (path, "present"|"absent"|"eq", expected)
    wait: float = 10.0  # bound of the poll, seconds
    note: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Result:
    step: str
    request: str
    status: int
    kind: str
    body: Any
    text: str
    waited_s: float = 0.0
    until_met: bool | None = None
    ctx: Mapping[str, str] = field(default_factory=lambda: CONTEXT)

    def get(self, path: str) -> Any:
        """A field of the answer (``[us]`` is this run's instance)."""
        return extract(self.body, path, self.ctx)


@dataclass(frozen=True)
class Diff:
    step: str
    aspect: str
    emulator: str
    real: str
    verdict: str  # "listed" | "UNLISTED" | "info"
    reason: str = ""


@dataclass(frozen=True)
class Known:
    """A listed difference: where it shows, and why it is acceptable."""

    registry: Registry
    flavours: tuple[str, ...]  # ("2.x",), ("3.x",), ("2.x", "3.x") or ("-",) for Eureka
    step: str
    aspect: str
    reason: str


@dataclass
class Target:
    """Where a sequence is sent: a base URL and how to get tokens."""

    name: str  # "emulator" or "real"
    base: str  # Nacos: http://127.0.0.1:P/nacos ; Eureka: http://127.0.0.1:P/eureka/
    version: str
    password: str = ""
    user: str = "nacos"
    expired_token: Callable[[Target], str] | None = None
    _token: str | None = None

    def token(self) -> str:
        if self._token is None:
            r = httpx.post(
                self.base + "/v1/auth/users/login",
                data={"username": self.user, "password": self.password},
                timeout=10,
            )
            r.raise_for_status()
            self._token = str(r.json()["accessToken"])
        return self._token


# --- the sequences ---

_SVC = {"namespaceId": "public", "groupName": "DEFAULT_GROUP", "serviceName": "{service}"}
_IDS = {**_SVC, "clusterName": "DEFAULT", "ip": "{ip}", "port": "{port}"}
_GHOST = {**_IDS, "ip": "{ghost_ip}"}
_META = '{"zone":"a","ver":"1"}'
_HOST_READS = ("ip", "port", "weight", "enabled", "healthy", "metadata")


def _host(prefix: str, fields: tuple[str, ...] = _HOST_READS) -> tuple[str, ...]:
    return tuple(f"{prefix}.{f}" for f in fields)


_item = _host
# A subscriber at our instance's ip:port, so that ``[us]`` finds it in the lists.
_SUBSCRIBER = {"clientIP": "{ip}", "udpPort": "{port}"}
_NACOS_CLIENT = {"User-Agent": "Nacos-Java-Client:v2.3.1"}
_AGGREGATED_V1 = {
    "serviceName": "DEFAULT_GROUP@@{service}",
    "namespaceId": "public",
    "aggregation": "true",
    "pageNo": "1",
    "pageSize": "1000",
}
_AGGREGATED_V3 = {**_SVC, "aggregation": "true", "pageNo": "1", "pageSize": "500"}
_SUB_V1_READS = ("addrStr", "agent", "app", "ip", "port", "namespaceId", "serviceName")
_SUB_V3_READS = ("namespaceId", "groupName", "serviceName", "ip", "port", "address", "agent")


def _login(flavour: str) -> list[Call]:
    calls = [
        Call(
            "login",
            "POST",
            "/v1/auth/users/login",
            form={"username": "nacos", "password": "{password}"},
            auth="none",
            reads=("accessToken", "tokenTtl"),
            values=("tokenTtl", "username"),
        ),
        Call(
            "login_bad_password",
            "POST",
            "/v1/auth/users/login",
            form={"username": "nacos", "password": "wrong-password"},
            auth="none",
            contains=("not found",),
            # 2.3.1 answers a wrong password with no valid HTTP answer (status 0), 3.1.0 with a
            # 500; the agent takes both, and an unknown user's 403/500, as AuthError.
            note="the agent treats a broken login answer, a 403, or (3.x) a 500 as AuthError",
        ),
        Call(
            "login_unknown_user",
            "POST",
            "/v1/auth/users/login",
            form={"username": "nobody", "password": "x"},
            auth="none",
            contains=("not found",),
        ),
    ]
    if flavour == "3.x":
        # The agent logs in on 3.x with the v3 path first (agent/registry/nacos/http.py _login).
        v3 = "/v3/auth/user/login"
        calls[1:1] = [
            Call(
                "login_v3",
                "POST",
                v3,
                form={"username": "nacos", "password": "{password}"},
                auth="none",
                reads=("accessToken", "tokenTtl"),
                values=("tokenTtl",),
            ),
            Call(
                "login_v3_bad_password",
                "POST",
                v3,
                form={"username": "nacos", "password": "wrong-password"},
                auth="none",
                contains=("not found",),
            ),
            Call(
                "login_v3_unknown_user",
                "POST",
                v3,
                form={"username": "nobody", "password": "x"},
                auth="none",
                contains=("not found",),
            ),
        ]
    return calls


def _detect() -> list[Call]:
    return [
        Call("state_v3", "GET", "/v3/admin/core/state", auth="none", reads=("data.version",)),
        Call("state_v1", "GET", "/v1/console/server/state", auth="none", reads=("version",)),
    ]


_TOKEN_ERRORS: tuple[Auth, ...] = ("none", "garbage", "expired")


def _token_errors(path: str, params: Mapping[str, str]) -> list[Call]:
    return [Call(f"{kind}_token", "GET", path, params=params, auth=kind) for kind in _TOKEN_ERRORS]


def nacos_2x() -> list[Call]:
    lst = {**_SVC, "healthyOnly": "false"}
    catalog = {**_SVC, "clusterName": "DEFAULT", "pageNo": "1", "pageSize": "1000"}
    return [
        *_detect(),
        *_login("2.x"),
        Call(
            "register",
            "POST",
            "/v1/ns/instance",
            params={**_IDS, "weight": "3", "ephemeral": "true", "metadata": _META},
        ),
        Call(
            "consumer_list",
            "GET",
            "/v1/ns/instance/list",
            params=lst,
            reads=("hosts", *_host("hosts[us]")),
            values=_host("hosts[us]", ("weight", "enabled", "metadata")),
            until=("hosts[us]", "present", None),
        ),
        Call(
            "admin_detail",
            "GET",
            "/v1/ns/instance",
            params=_IDS,
            reads=("ip", "port", "clusterName", "weight", "metadata", "enabled", "healthy"),
            values=("clusterName", "weight", "metadata", "enabled"),
        ),
        Call(
            "admin_catalog",
            "GET",
            "/v1/ns/catalog/instances",
            params=catalog,
            reads=("list", "list[us].ip", "list[us].port", "list[us].enabled"),
            values=("list[us].enabled",),
        ),
        Call(
            "disable",
            "PATCH",
            "/v1/ns/instance",
            params={**_IDS, "enabled": "false", "weight": "3.0"},
            note="the agent's take-out on 2.x",
        ),
        Call(
            "consumer_list_after_disable",
            "GET",
            "/v1/ns/instance/list",
            params=lst,
            reads=("hosts",),
            until=("hosts[us]", "absent", None),
        ),
        Call(
            "admin_detail_after_disable",
            "GET",
            "/v1/ns/instance",
            params=_IDS,
            reads=("weight", "metadata", "enabled"),
            values=("weight", "metadata", "enabled"),
        ),
        Call(
            "admin_catalog_after_disable",
            "GET",
            "/v1/ns/catalog/instances",
            params=catalog,
            reads=("list[us].enabled", "list[us].weight", "list[us].metadata"),
            values=("list[us].enabled", "list[us].weight", "list[us].metadata"),
            until=("list[us].enabled", "eq", False),
        ),
        Call(
            "subscribers",
            "GET",
            "/v2/ns/client/service/subscriber/list",
            params=_SVC,
            reads=("code", "data"),
        ),
        Call(
            "subscribe_v1",
            "GET",
            "/v1/ns/instance/list",
            params={**lst, **_SUBSCRIBER},
            reads=("hosts",),
            headers=_NACOS_CLIENT,
            note="a Nacos client's v1 list call with clientIP and udpPort subscribes (UDP push)",
        ),
        Call(
            "subscribers_aggregated",
            "GET",
            "/v1/ns/service/subscribers",
            params=_AGGREGATED_V1,
            reads=("count", "subscribers", *_item("subscribers[us]", _SUB_V1_READS)),
            values=("subscribers[us].ip", "subscribers[us].port", "subscribers[us].addrStr"),
            until=("subscribers[us]", "present", None),
            note="the agent's list of consumers on 2.x",
        ),
        Call(
            "subscribers_aggregated_no_token",
            "GET",
            "/v1/ns/service/subscribers",
            params=_AGGREGATED_V1,
            auth="none",
        ),
        *_token_errors("/v1/ns/instance/list", lst),
        Call("unknown_instance_detail", "GET", "/v1/ns/instance", params=_GHOST),
        Call(
            "unknown_instance_patch",
            "PATCH",
            "/v1/ns/instance",
            params={**_GHOST, "enabled": "false", "weight": "1.0"},
        ),
        Call(
            "unknown_service_detail",
            "GET",
            "/v1/ns/instance",
            params={**_IDS, "serviceName": "no-such-svc"},
        ),
        Call("deregister", "DELETE", "/v1/ns/instance", params={**_IDS, "ephemeral": "true"}),
    ]


def nacos_3x() -> list[Call]:
    v1_list = {**_SVC, "healthyOnly": "false"}
    return [
        *_detect(),
        *_login("3.x"),
        Call(
            "register",
            "POST",
            "/v3/admin/ns/instance",
            params={**_IDS, "weight": "3", "ephemeral": "true", "metadata": _META},
            reads=("code", "data"),
        ),
        Call(
            "consumer_list",
            "GET",
            "/v3/client/ns/instance/list",
            params=_SVC,
            reads=("data", *_host("data[us]")),
            values=_host("data[us]", ("weight", "enabled", "metadata")),
            until=("data[us]", "present", None),
        ),
        Call(
            "admin_detail",
            "GET",
            "/v3/admin/ns/instance",
            params=_IDS,
            reads=_host("data", (*_HOST_READS, "clusterName", "ephemeral")),
            values=_host("data", ("weight", "enabled", "metadata", "clusterName", "ephemeral")),
        ),
        Call(
            "admin_list",
            "GET",
            "/v3/admin/ns/instance/list",
            params=_SVC,
            reads=("data", "data[us].enabled"),
            values=("data[us].enabled", "data[us].weight"),
        ),
        Call(
            "disable",
            "PUT",
            "/v3/admin/ns/instance/partial",
            params={**_IDS, "enabled": "false", "weight": "3.0", "ephemeral": "true"},
            reads=("code", "data"),
            note="the agent's take-out on 3.x",
        ),
        Call(
            "consumer_list_after_disable",
            "GET",
            "/v3/client/ns/instance/list",
            params=_SVC,
            reads=("data",),
            until=("data[us]", "absent", None),
        ),
        Call(
            "admin_detail_after_disable",
            "GET",
            "/v3/admin/ns/instance",
            params=_IDS,
            reads=_host("data", ("weight", "enabled", "metadata")),
            values=_host("data", ("weight", "enabled", "metadata")),
            until=("data.enabled", "eq", False),
        ),
        Call(
            "v1_consumer_list_after_disable",
            "GET",
            "/v1/ns/instance/list",
            params=v1_list,
            reads=("hosts",),
            until=("hosts[us]", "absent", None),
            note="v1 list is an OPEN_API: still served by 3.x",
        ),
        Call(
            "subscribers",
            "GET",
            "/v3/admin/ns/client/service/subscriber/list",
            params=_SVC,
            reads=("code", "data"),
        ),
        Call(
            "subscribe_v1",
            "GET",
            "/v1/ns/instance/list",
            params={**v1_list, **_SUBSCRIBER},
            reads=("hosts",),
            headers=_NACOS_CLIENT,
        ),
        Call(
            "subscribers_aggregated",
            "GET",
            "/v3/admin/ns/service/subscribers",
            params=_AGGREGATED_V3,
            reads=(
                "code",
                "data.totalCount",
                "data.pageNumber",
                "data.pagesAvailable",
                "data.pageItems",
                *_item("data.pageItems[us]", _SUB_V3_READS),
            ),
            values=("data.pageNumber", "data.pageItems[us].port", "data.pageItems[us].address"),
            until=("data.pageItems[us]", "present", None),
            note="the agent's list of consumers on 3.x",
        ),
        Call(
            "subscribers_aggregated_no_token",
            "GET",
            "/v3/admin/ns/service/subscribers",
            params=_AGGREGATED_V3,
            auth="none",
        ),
        Call(
            "subscribers_aggregated_v1",
            "GET",
            "/v1/ns/service/subscribers",
            params={**_AGGREGATED_V1},
            note="gone on 3.x: 410",
        ),
        *_token_errors("/v3/client/ns/instance/list", _SVC),
        Call(
            "v1_patch",
            "PATCH",
            "/v1/ns/instance",
            params={**_IDS, "enabled": "false", "weight": "3.0"},
            note="the agent expects 410 here and switches to v3",
        ),
        Call("v1_put", "PUT", "/v1/ns/instance", params={**_IDS, "enabled": "false"}),
        Call("v1_detail", "GET", "/v1/ns/instance", params=_IDS),
        Call("unknown_instance_detail", "GET", "/v3/admin/ns/instance", params=_GHOST),
        Call(
            "unknown_instance_partial",
            "PUT",
            "/v3/admin/ns/instance/partial",
            params={**_GHOST, "enabled": "false", "weight": "1.0"},
        ),
        Call(
            "deregister",
            "DELETE",
            "/v3/admin/ns/instance",
            params={**_IDS, "ephemeral": "true"},
        ),
    ]


def _eureka_instance() -> dict[str, Any]:
    return {
        "instance": {
            "instanceId": "{id}",
            "hostName": "{ip}",
            "app": "{app}",
            "ipAddr": "{ip}",
            "status": "UP",
            "overriddenStatus": "UNKNOWN",
            "port": {"$": "{port}", "@enabled": "true"},
            "securePort": {"$": 443, "@enabled": "false"},
            "countryId": 1,
            "dataCenterInfo": {
                "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                "name": "MyOwn",
            },
            "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
            "metadata": {"zone": "a", "ver": "1"},
            "vipAddress": "diffapp",
            "secureVipAddress": "diffapp",
        }
    }


_EU_ONE = "apps/{app}/{id}"
_EU_READS = (
    "instance.instanceId",
    "instance.ipAddr",
    "instance.port.$",
    "instance.status",
    "instance.overriddenStatus",
    "instance.metadata",
)
_EU_DELTA = "applications.application[app].instance[us]"


def eureka() -> list[Call]:
    return [
        Call("register", "POST", "apps/{app}", body=_eureka_instance()),
        Call(
            "instance_json",
            "GET",
            _EU_ONE,
            reads=_EU_READS,
            values=("instance.status", "instance.overriddenStatus", "instance.metadata"),
        ),
        Call(
            "app_json",
            "GET",
            "apps/{app}",
            reads=("application.instance[us].ipAddr", "application.instance[us].port.$"),
            until=("application.instance[us]", "present", None),
            note="cached: read-only cache tick",
        ),
        Call(
            "status_out_of_service",
            "PUT",
            _EU_ONE + "/status",
            params={"value": "OUT_OF_SERVICE"},
        ),
        Call(
            "status_bad_value",
            "PUT",
            _EU_ONE + "/status",
            params={"value": "out_of_service"},
            note="valueOf is case-sensitive; the agent retries once on 500",
        ),
        Call(
            "instance_json_out",
            "GET",
            _EU_ONE,
            reads=_EU_READS,
            values=("instance.status", "instance.overriddenStatus", "instance.metadata"),
        ),
        Call(
            "instance_xml_out",
            "GET",
            _EU_ONE,
            accept="xml",
            reads=(
                "instance.instanceId",
                "instance.status",
                "instance.overriddenstatus",
                "instance.port.$",
            ),
            values=("instance.status", "instance.overriddenstatus", "instance.port.$"),
        ),
        Call(
            "delta_out",
            "GET",
            "apps/delta",
            reads=(
                "applications.versions__delta",
                "applications.apps__hashcode",
                f"{_EU_DELTA}.status",
                f"{_EU_DELTA}.actionType",
            ),
            values=(f"{_EU_DELTA}.status",),
            until=(f"{_EU_DELTA}.status", "eq", "OUT_OF_SERVICE"),
            wait=15.0,
        ),
        Call(
            "delete_override_up",
            "DELETE",
            _EU_ONE + "/status",
            params={"value": "UP"},
        ),
        Call(
            "instance_json_up",
            "GET",
            _EU_ONE,
            reads=_EU_READS,
            values=("instance.status", "instance.overriddenStatus"),
        ),
        Call(
            "delta_up",
            "GET",
            "apps/delta",
            values=(f"{_EU_DELTA}.status",),
            until=(f"{_EU_DELTA}.status", "eq", "UP"),
            wait=15.0,
        ),
        Call("cancel", "DELETE", _EU_ONE),
        Call("instance_after_cancel", "GET", _EU_ONE),
        Call("cancel_again", "DELETE", _EU_ONE),
        Call("unknown_instance_get", "GET", "apps/{app}/{ghost_id}"),
        Call(
            "unknown_instance_status",
            "PUT",
            "apps/{app}/{ghost_id}/status",
            params={"value": "OUT_OF_SERVICE"},
        ),
        Call(
            "unknown_instance_delete_override",
            "DELETE",
            "apps/{app}/{ghost_id}/status",
            params={"value": "UP"},
        ),
        Call("unknown_app", "GET", "apps/NOSUCHAPP"),
    ]


def sequence(registry: Registry, flavour: str) -> list[Call]:
    if registry == "eureka":
        return eureka()
    return nacos_3x() if flavour == "3.x" else nacos_2x()


# --- known differences ---

_XML_DOWN = (
    "the real server's live XML read (GET apps/{APP}/{id}, XStream converter) writes status "
    "OUT_OF_SERVICE as DOWN; JSON and the cached apps/... XML say OUT_OF_SERVICE. The agent "
    "reads JSON only. Not emulated: lab/tests/test_eureka_emulator.py "
    "test_py_eureka_client_registers_heartbeats_and_reads_xml asserts OUT_OF_SERVICE through "
    "py-eureka-client's XML read"
)

# Every difference that is not fixed in the emulator, with its reason (docs/differences.md).
KNOWN: list[Known] = [
    Known("eureka", ("-",), "instance_xml_out", "value instance.status", _XML_DOWN),
]


def known_reason(registry: Registry, flavour: str, step: str, aspect: str) -> str | None:
    for k in KNOWN:
        if (
            k.registry == registry
            and (flavour in k.flavours or "*" in k.flavours)
            and k.step == step
            and (
                k.aspect == aspect or (k.aspect.endswith("*") and aspect.startswith(k.aspect[:-1]))
            )
        ):
            return k.reason
    return None


# --- reading answers ---


def _fill(value: Any, ctx: Mapping[str, str]) -> Any:
    if value == "{port}":
        return int(ctx["port"])  # a JSON number in a body (Eureka's port "$")
    if isinstance(value, str):
        return value.format(**ctx) if "{" in value and not value.startswith('{"') else value
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    return value


def _xml_to_dict(el: ET.Element) -> Any:
    children = list(el)
    if not children and not el.attrib:
        return el.text or ""
    out: dict[str, Any] = {f"@{k}": v for k, v in el.attrib.items()}
    if not children:
        out["$"] = el.text or ""
        return out
    for child in children:
        value = _xml_to_dict(child)
        if child.tag in out:
            prev = out[child.tag]
            out[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[child.tag] = value
    return out


def _parse(response: httpx.Response) -> tuple[str, Any]:
    text = response.text
    if not text.strip():
        return "empty", None
    ctype = response.headers.get("content-type", "")
    if "xml" in ctype or text.lstrip().startswith("<"):
        try:
            root = ET.fromstring(text)  # noqa: S314 (our own loopback servers)
            return "xml", {root.tag: _xml_to_dict(root)}
        except ET.ParseError:
            return "text", None
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", None


def _is_us(item: Any, ctx: Mapping[str, str]) -> bool:
    if not isinstance(item, dict):
        return False
    if "instanceId" in item and ("ipAddr" in item or "hostName" in item):
        return str(item.get("instanceId")) == ctx["id"]
    port = item.get("port")
    if isinstance(port, dict):
        port = port.get("$")
    return str(item.get("ip")) == ctx["ip"] and str(port) == ctx["port"]


def extract(body: Any, path: str, ctx: Mapping[str, str] = CONTEXT) -> Any:
    """A value by path: ``a.b``, ``list[us]`` (our instance, the last match), ``apps[app]``."""
    node = body
    for segment in path.split("."):
        selector = None
        if segment.endswith("]") and "[" in segment:
            segment, selector = segment[:-1].split("[", 1)
        if not isinstance(node, dict) or segment not in node:
            return MISSING
        node = node[segment]
        if selector is not None:
            items = node if isinstance(node, list) else [node]  # Eureka's single objects
            if selector == "us":
                found = [i for i in items if _is_us(i, ctx)]
            else:  # "app"
                found = [
                    i for i in items if isinstance(i, dict) and str(i.get("name")) == ctx["app"]
                ]
            if not found:
                return MISSING
            node = found[-1]  # clients apply delta entries in order: the last one wins
    return node


def type_name(value: Any) -> str:
    if value is MISSING or value == MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _until_met(body: Any, until: tuple[str, str, Any], ctx: Mapping[str, str]) -> bool:
    path, op, expected = until
    value = extract(body, path, ctx)
    if op == "present":
        return not _missing(value)
    if op == "absent":
        return _missing(value) and _container_present(body, path, ctx)
    return bool(value == expected)


def _container_present(body: Any, path: str, ctx: Mapping[str, str]) -> bool:
    # "hosts[us]" absent counts only when "hosts" itself is there (not an error body).
    head = path.rsplit(".", 1)[0] if "." in path else path
    head = head.split("[", 1)[0] if head.endswith("]") else head
    return not _missing(extract(body, head, ctx))


def _missing(value: Any) -> bool:
    return isinstance(value, str) and value == MISSING


# --- running ---


def _auth_headers(target: Target, call: Call, registry: Registry) -> dict[str, str]:
    if registry == "eureka" or call.auth == "none":
        return {}
    if call.auth == "garbage":
        token = "not-a-real-token"
    elif call.auth == "expired":
        if target.expired_token is None:
            raise ValueError(f"{target.name}: no expired token available")
        token = target.expired_token(target)
    else:
        token = target.token()
    # As the agent sends it (agent/registry/nacos/http.py _auth_headers).
    return {"Authorization": f"Bearer {token}", "accessToken": token}


def run_call(
    client: httpx.Client, target: Target, call: Call, registry: Registry, ctx: Mapping[str, str]
) -> Result:
    params = _fill(dict(call.params), ctx)
    form = _fill(dict(call.form), {**ctx, "password": target.password}) if call.form else None
    body = _fill(call.body, ctx) if call.body is not None else None
    path = call.path.format(**ctx)
    url = target.base + path
    headers = {**call.headers, **_auth_headers(target, call, registry)}
    if registry == "eureka":
        headers["Accept"] = "application/xml" if call.accept == "xml" else "application/json"
    start = time.monotonic()
    end = start + call.wait
    while True:
        try:
            response = client.request(
                call.method, url, params=params, data=form, json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            # e.g. Nacos 2.3.1 answering "HTTP/1.1 0" (no valid status line at all)
            return Result(
                call.step, f"{call.method} {path}", 0, "broken", None, str(exc)[:300], ctx=ctx
            )
        kind, parsed = _parse(response)
        met = None if call.until is None else _until_met(parsed, call.until, ctx)
        if met is not False or time.monotonic() >= end:
            break
        time.sleep(0.1)
    return Result(
        step=call.step,
        request=f"{call.method} {path}",
        status=response.status_code,
        kind=kind,
        body=parsed,
        text=response.text.strip().replace("\n", " ")[:300],
        waited_s=round(time.monotonic() - start, 2),
        until_met=met,
        ctx=ctx,
    )


def run_sequence(
    target: Target, registry: Registry, flavour: str, ctx: Mapping[str, str] | None = None
) -> list[Result]:
    ctx = fresh_context() if ctx is None else ctx
    with httpx.Client(timeout=15, trust_env=False) as client:
        return [run_call(client, target, c, registry, ctx) for c in sequence(registry, flavour)]


# --- comparing ---


def _show(value: Any) -> str:
    if value is MISSING or value == MISSING:
        return MISSING
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def summary(result: Result) -> str:
    """A short form of an answer for the table."""
    if result.kind == "json" and isinstance(result.body, dict):
        keys = ",".join(sorted(result.body)[:6])
        return f"{result.status} json {{{keys}}}"
    if result.kind in ("text", "xml"):
        return f"{result.status} {result.kind} {result.text[:60]!r}"
    return f"{result.status} {result.kind}"


def _keys(result: Result, path: str) -> set[str]:
    node = result.body if not path else result.get(path)
    return set(node) if isinstance(node, dict) else set()


def compare(
    registry: Registry, flavour: str, emulator: list[Result], real: list[Result]
) -> list[Diff]:
    """Every difference between the two runs, with its verdict from KNOWN."""
    calls = {c.step: c for c in sequence(registry, flavour)}
    out: list[Diff] = []

    def add(step: str, aspect: str, e: str, r: str, info: bool = False) -> None:
        if info:
            out.append(Diff(step, aspect, e, r, "info"))
            return
        reason = known_reason(registry, flavour, step, aspect)
        out.append(Diff(step, aspect, e, r, "listed" if reason else "UNLISTED", reason or ""))

    for e, r in zip(emulator, real, strict=True):
        call = calls[e.step]
        if e.status != r.status:
            add(e.step, "status", str(e.status), str(r.status))
        if e.kind != r.kind:
            add(e.step, "kind", e.kind, r.kind)
        if e.until_met != r.until_met:
            add(e.step, "until", str(e.until_met), str(r.until_met))
        for path in call.reads:
            te, tr = type_name(e.get(path)), type_name(r.get(path))
            if te != tr:
                add(e.step, f"read {path}", te, tr)
        for path in call.values:
            ve, vr = e.get(path), r.get(path)
            if ve != vr:
                add(e.step, f"value {path}", _show(ve), _show(vr))
        for needle in call.contains:
            ce, cr = needle in e.text, needle in r.text
            if ce != cr:
                add(e.step, f"text {needle!r}", str(ce), str(cr))
        if e.kind == r.kind == "json":
            for where in _shape_paths(call):
                ke, kr = _keys(e, where), _keys(r, where)
                if ke != kr:
                    only_e, only_r = sorted(ke - kr), sorted(kr - ke)
                    add(
                        e.step,
                        f"keys {where or '.'}",
                        "+" + ",".join(only_e) if only_e else "",
                        "+" + ",".join(only_r) if only_r else "",
                        info=True,
                    )
    return out


def _shape_paths(call: Call) -> list[str]:
    paths = {""}
    for p in (*call.reads, *call.values):
        if "." in p:
            paths.add(p.rsplit(".", 1)[0])
    return sorted(paths)


def unlisted(diffs: list[Diff]) -> list[Diff]:
    return [d for d in diffs if d.verdict == "UNLISTED"]


def table_rows(diffs: list[Diff]) -> list[tuple[str, str, str, str, str, str]]:
    """(step, aspect, emulator, real, verdict, reason) for every difference."""
    return [(d.step, d.aspect, d.emulator, d.real, d.verdict, d.reason) for d in diffs]


def steps_rows(emulator: list[Result], real: list[Result], diffs: list[Diff]) -> list[list[str]]:
    """One row per step: step, request, emulator answer, real answer, verdict."""
    rows = []
    for e, r in zip(emulator, real, strict=True):
        mine = [d for d in diffs if d.step == e.step and d.verdict != "info"]
        if not mine:
            verdict = "same"
        elif any(d.verdict == "UNLISTED" for d in mine):
            verdict = "UNLISTED: " + "; ".join(d.aspect for d in mine if d.verdict == "UNLISTED")
        else:
            verdict = "listed: " + "; ".join(f"{d.aspect} ({d.reason})" for d in mine)
        rows.append([e.step, e.request, summary(e), summary(r), verdict])
    return rows


def markdown(header: list[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(str(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(title: str, emulator: list[Result], real: list[Result], diffs: list[Diff]) -> str:
    parts = [f"## {title}", ""]
    parts.append(
        markdown(
            ["step", "request", "emulator", "real", "verdict"], steps_rows(emulator, real, diffs)
        )
    )
    parts += ["", "Differences:", ""]
    parts.append(
        markdown(["step", "aspect", "emulator", "real", "verdict", "reason"], table_rows(diffs))
    )
    return "\n".join(parts)


# --- targets ---


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_expired(secret_b64: str) -> Callable[[Target], str]:
    """A token the real server signed-checks fine but finds expired (its header, our exp)."""

    def make(target: Target) -> str:
        header = target.token().split(".", 1)[0]
        alg = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        payload = _b64url(json.dumps({"sub": target.user, "exp": int(time.time()) - 60}).encode())
        signing = f"{header}.{payload}".encode()
        sig = hmac.new(base64.b64decode(secret_b64), signing, digest).digest()
        return f"{header}.{payload}.{_b64url(sig)}"

    return make


def _emulator_expired(emulator: Any) -> Callable[[Target], str]:
    def make(target: Target) -> str:
        token = str(emulator.auth.issue(target.user))
        with emulator.auth.lock:
            emulator.auth.tokens[token] = emulator.clock() - 1
        return token

    return make


REAL_VERSIONS = {"2.x": "2.3.1", "3.x": "3.1.0"}


@contextlib.contextmanager
def nacos_emulator_target(flavour: str, password: str) -> Iterator[Target]:
    from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator

    config = EmulatorConfig(
        flavour="3.x" if flavour == "3.x" else "2.x",
        version=REAL_VERSIONS[flavour],
        auth_enabled=True,
        users={"nacos": password},
    )
    with NacosEmulator(config) as emulator:
        yield Target(
            "emulator",
            emulator.url + "/nacos",
            config.version or "",
            password=password,
            expired_token=_emulator_expired(emulator),
        )


def nacos_real_target(server: Any) -> Target:
    """A Target for a started ``prestop_lab.real.NacosServer``."""
    args = [str(a) for a in server.proc.popen.args]
    secret = next(a.split("=", 1)[1] for a in args if "token.secret.key=" in a)
    return Target(
        "real",
        server.url,
        REAL_VERSIONS[server.flavour],
        password=server.password,
        expired_token=forge_expired(secret),
    )


@contextlib.contextmanager
def eureka_emulator_target(cache_interval_s: float = 1.0) -> Iterator[Target]:
    from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

    config = EurekaConfig(cache_update_interval=cache_interval_s, self_preservation=False)
    with EurekaEmulator(config) as emulator:
        yield Target("emulator", emulator.url, "emulator")


def eureka_real_target(peers: Any) -> Target:
    return Target("real", str(peers.urls[0]), "Spring Cloud Netflix Eureka server")


def run_pair(
    registry: Registry, flavour: str, real: Target, ctx: Mapping[str, str] | None = None
) -> tuple[list[Result], list[Result], list[Diff]]:
    """The sequence against a fresh emulator and ``real``; the comparison."""
    ctx = fresh_context() if ctx is None else ctx
    manager = (
        eureka_emulator_target()
        if registry == "eureka"
        else nacos_emulator_target(flavour, real.password)
    )
    with manager as emulator:
        emu_results = run_sequence(emulator, registry, flavour, ctx)
    real_results = run_sequence(real, registry, flavour, ctx)
    return emu_results, real_results, compare(registry, flavour, emu_results, real_results)


def run_real(registry: str, flavour: str) -> tuple[str, int]:
    """Start the real server, run the pair, render; (text, number of unlisted differences)."""
    from prestop_lab.real import EurekaPeers, NacosServer

    if registry == "eureka":
        with EurekaPeers(cache_interval_s=1.0) as peers:
            emu, real, diffs = run_pair("eureka", "-", eureka_real_target(peers))
        title = "Eureka (Spring Cloud Netflix Eureka server) vs eureka_emulator"
    else:
        fl: Literal["2.x", "3.x"] = "3.x" if flavour == "3.x" else "2.x"
        server = NacosServer(fl).start()
        try:
            emu, real, diffs = run_pair("nacos", fl, nacos_real_target(server))
        finally:
            server.stop()
        title = f"Nacos {REAL_VERSIONS[fl]} vs nacos_emulator (flavour {fl})"
    bad = unlisted(diffs)
    text = render(title, emu, real, diffs)
    if bad:
        text += f"\n\n{len(bad)} unlisted difference(s)"
    return text, len(bad)
