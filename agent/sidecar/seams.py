"""What the sidecar needs of a registry adapter, and nothing more.

Weights are a seam of their own: only registries with weights (Nacos) are given to the
warm-up, so the sidecar never probes an adapter for a method.
"""

from __future__ import annotations

from typing import Protocol

from agent.deadline import Deadline
from agent.registry import InstanceState, TakeOut


class SidecarRegistry(Protocol):
    """Readiness, the start-up hold and the stale-disabled repair."""

    @property
    def name(self) -> str: ...

    def get_instance(self, deadline: Deadline) -> InstanceState | None: ...

    def take_out(self, deadline: Deadline) -> TakeOut: ...

    def put_back(self, deadline: Deadline) -> TakeOut: ...

    def serving(self, deadline: Deadline) -> bool:
        """Consumers can reach the instance (readiness; Eureka: they fetch it UP)."""
        ...


class WeightedRegistry(Protocol):
    """The warm-up: read the weight, write the next step."""

    def get_instance(self, deadline: Deadline) -> InstanceState | None: ...

    def set_weight(self, weight: float, deadline: Deadline) -> object:
        """Write the weight; what it answers is not used."""
        ...
