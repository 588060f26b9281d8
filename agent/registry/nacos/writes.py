"""Writing ``enabled`` and the weight of one Nacos instance, the way each major version needs.

* 2.x: ``PATCH /v1/ns/instance`` with ``enabled`` and the current weight. PATCH needs the
  instance to exist and leaves metadata alone; a first PATCH starts from an ops record whose
  weight is 1.0, hence the weight read first and sent back.
* 3.x: ``PUT /v3/admin/ns/instance/partial``. It defaults an omitted weight to 1.0, so the
  current weight is read first and sent back.
* 1.x: ``PUT /v1/ns/instance`` replaces the whole record, so every current field is sent back.
"""

from __future__ import annotations

import json
from typing import Any

from agent.deadline import Deadline
from agent.exceptions import InstanceNotFound, RegistryRejected
from agent.logs import get_logger
from agent.registry import InstanceState
from agent.registry.nacos.answers import snippet, write_method
from agent.registry.nacos.http import NacosHttp, ServerInfo

log = get_logger()


def write(
    http: NacosHttp,
    ids: dict[str, Any],
    before: InstanceState,
    enabled: bool | None,
    server: ServerInfo,
    deadline: Deadline,
    *,
    weight: float | None = None,
) -> str:
    """One write of enabled (None: unchanged) and weight (None: the current one)."""
    weight = before.weight if weight is None else weight
    ids = {**ids, "clusterName": before.cluster}
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
        method = write_method(3)
        r = http.request("PUT", "/v3/admin/ns/instance/partial", deadline, params=params)
    elif server.major == 2:
        # PATCH clones the ops record, or starts from a fresh one whose weight is 1.0
        # (N 2.5.1:naming/.../core/v2/metadata/InstanceMetadata.java, weight = 1.0D):
        # without an explicit weight a weight-3 instance would silently drop to 1.
        method = write_method(2)
        r = http.request(
            "PATCH", "/v1/ns/instance", deadline, params={**ids, **flags, "weight": weight}
        )
        if r.status_code == 410:
            http.server = ServerInfo("3 (from HTTP 410)", 3)
            return write(http, ids, before, enabled, http.server, deadline, weight=weight)
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
        method = write_method(1)
        r = http.request("PUT", "/v1/ns/instance", deadline, params=params)
    if r.status_code == 404:
        raise InstanceNotFound(
            f"{method}: instance {ids['ip']}:{ids['port']} vanished before the write"
        )
    if r.status_code >= 400:
        raise RegistryRejected(f"{method} -> HTTP {r.status_code}: {snippet(r)}")
    log.info(
        "registry_write",
        method=method,
        enabled=enabled,
        weight=weight,
        server_version=server.version,
    )
    return method
