"""The composition root: one Resources object that its user closes, and the sidecar's seams."""

from __future__ import annotations

import pytest

from agent import config, wiring
from agent.registry.nacos import NacosRegistry
from agent.shutdown import ActuatorShutdown, NoShutdown, SignalShutdown

BASE = {
    "PRESTOP_SERVICE": "orders",
    "PRESTOP_IP": "10.0.0.5",
    "PRESTOP_PORT": "8080",
    "PRESTOP_TOKEN": "t0ken-value",
}
NACOS = {**BASE, "PRESTOP_NACOS_ADDR": "nacos:8848"}
EUREKA = {**BASE, "PRESTOP_EUREKA_URL": "http://eureka:8761/eureka/"}


def test_build_owns_its_clients_and_closes_them() -> None:
    with wiring.build(config.load({}, NACOS)) as resources:
        clients = list(resources.clients)
        assert {resources.registry_http, resources.app_http} <= set(clients)
        assert resources.deps.registry is resources.registry
        assert not any(c.is_closed for c in clients)
    assert all(c.is_closed for c in clients)


@pytest.mark.parametrize(
    ("how", "kind"),
    [("actuator", ActuatorShutdown), ("signal", SignalShutdown), ("none", NoShutdown)],
)
def test_every_action_watches_the_apps_port(how: str, kind: type) -> None:
    env = {**NACOS, "PRESTOP_SHUTDOWN": how, "PRESTOP_SIGNAL_TARGET": "java"}
    with wiring.build(config.load({}, env)) as resources:
        assert isinstance(resources.action, kind)
        assert resources.action.port == 8080


@pytest.mark.parametrize(("env", "weighted"), [(NACOS, True), (EUREKA, False)])
def test_only_a_registry_with_weights_is_given_to_the_warm_up(
    env: dict[str, str], weighted: bool
) -> None:
    cfg = config.load({}, env)
    with wiring.build_sidecar(cfg, config.load_sidecar({}, env, cfg)) as sidecar:
        assert (sidecar.weights is not None) is weighted
        if weighted:
            assert isinstance(sidecar.weights, NacosRegistry)


def test_every_adapter_is_a_full_registry_and_fits_every_callers_seam() -> None:
    """mypy checks the assignments below (structural typing); the test only builds them. A new
    adapter added to ``registry_for`` must fit the full protocol and each caller's seam."""
    from agent.check import CheckedRegistry
    from agent.registry import Registry
    from agent.sequence import DrainRegistry
    from agent.sidecar.seams import SidecarRegistry, WeightedRegistry

    for env in (NACOS, EUREKA):
        with wiring.build(config.load({}, env)) as resources:
            adapter = resources.registry
            full: Registry = adapter
            drain: DrainRegistry = full
            side: SidecarRegistry = full
            checked: CheckedRegistry = full
            seams: tuple[object, ...] = (drain, side, checked)
            assert all(seam is adapter for seam in seams)
    with wiring.build(config.load({}, NACOS)) as resources:
        assert isinstance(resources.registry, NacosRegistry)
        weighted: WeightedRegistry = resources.registry
        assert weighted is resources.registry
