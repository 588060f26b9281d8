"""The registry seam: what the shutdown sequence needs from Nacos (or, later, Eureka).

The sequence only knows this Protocol; adapters translate their wire errors into
:mod:`agent.exceptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.deadline import Deadline


@dataclass(frozen=True)
class InstanceState:
    """The instance as the registry's admin side sees it (includes disabled instances)."""

    ip: str
    port: int
    cluster: str
    weight: float
    metadata: dict[str, str] = field(default_factory=dict)
    enabled: bool | None = None  # None: this API does not say
    healthy: bool | None = None
    ephemeral: bool | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "port": self.port,
            "cluster": self.cluster,
            "weight": self.weight,
            "enabled": self.enabled,
            "healthy": self.healthy,
            "metadata_keys": sorted(self.metadata),
        }


@dataclass(frozen=True)
class TakeOut:
    """What taking the instance out of service did."""

    before: InstanceState
    after: InstanceState | None
    server_version: str
    method: str  # e.g. "PATCH /v1/ns/instance"
    already_out: bool = False  # it was in the wanted state before any write of ours
    # Our write's answer was lost (timeout, dropped connection, 5xx) and reading the instance
    # back showed it in the wanted state: done, but we cannot say whose write did it.
    write_unconfirmed: bool = False


class Registry(Protocol):
    """Take one instance out of service and back, and read what consumers see.

    The whole of what an adapter implements (a new registry starts here). Its callers depend
    on smaller seams of their own (``sequence.DrainRegistry``, ``sidecar.seams``,
    ``check.CheckedRegistry``); tests/test_wiring.py has mypy check that every adapter fits
    this protocol and each seam.
    """

    name: str
    # True when after_stop() has work to do (Eureka's cancel); the sequence then adds a phase.
    cleans_up_after_stop: bool

    def connect(self, deadline: Deadline) -> str:
        """Reach a server and log in; a one-line description of what answered."""
        ...

    def describe_instance(self) -> str: ...

    def get_instance(self, deadline: Deadline) -> InstanceState | None: ...

    def take_out(self, deadline: Deadline) -> TakeOut: ...

    def put_back(self, deadline: Deadline) -> TakeOut: ...

    def visible_to_consumers(self, deadline: Deadline) -> bool: ...

    def serving(self, deadline: Deadline) -> bool:
        """Consumers can reach the instance (readiness; Eureka: they fetch it UP)."""
        ...

    def status(self, deadline: Deadline) -> dict[str, Any]: ...

    def after_stop(self, deadline: Deadline) -> str | None:
        """Clean-up once the app has stopped (Eureka: cancel the lease); None: nothing to do."""
        ...
