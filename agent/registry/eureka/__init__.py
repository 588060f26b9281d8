"""Eureka: take the instance ``OUT_OF_SERVICE`` on every server, confirm, cancel after stop.

Follows the agent recommendations of ``docs/eureka.md`` (what the agent does); comments
cite Netflix/eureka (``NE v2.0.6:<file>``) where a step depends on a server behaviour.

* Every server gets the write directly: a status update that a peer misses is not repaired by
  replicated heartbeats, so relying on replication can leave the instance UP somewhere.
* The lease is never cancelled while the app runs (its next heartbeat would re-register it UP
  and the cancel would have erased the override); :meth:`EurekaRegistry.after_stop` cancels
  once the app's port is closed.
* Always ``Accept: application/json`` (without it the server answers XML); readers accept a
  one-element list or a bare object, both spellings of ``overriddenStatus``, and numbers as
  strings.

The package: :mod:`~agent.registry.eureka.http` (the calls), :mod:`~agent.registry.eureka.answers`
(reading answers, no I/O) and :mod:`~agent.registry.eureka.registry` (the adapter itself).
"""

from agent.registry.eureka.answers import (
    OUT_OF_SERVICE,
    UP,
    as_list,
    instances_in,
    metadata_of,
    overridden,
    port_of,
)
from agent.registry.eureka.registry import EurekaRegistry

__all__ = [
    "OUT_OF_SERVICE",
    "UP",
    "EurekaRegistry",
    "as_list",
    "instances_in",
    "metadata_of",
    "overridden",
    "port_of",
]
