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

The package: :mod:`~agent.registry.nacos.http` (fail-over, login, version detection),
:mod:`~agent.registry.nacos.writes` (the write per version), :mod:`~agent.registry.nacos.answers`
(reading answers, no I/O) and :mod:`~agent.registry.nacos.registry` (the adapter itself).
"""

from agent.registry.nacos.http import NacosHttp, ServerInfo
from agent.registry.nacos.registry import SUBSCRIBER_PAGE, NacosRegistry

__all__ = ["SUBSCRIBER_PAGE", "NacosHttp", "NacosRegistry", "ServerInfo"]
