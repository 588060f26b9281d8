"""The rollout's consumer-notification settings and its lower bound at low request rates."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from prestop_lab.cli import lab
from prestop_lab.consumer import ConsumerConfig, Record
from prestop_lab.rollout import (
    Kubelet,
    NacosLab,
    RolloutResult,
    RolloutSettings,
    _app_stop,
    _bound,
    _routable_bound,
    write_json,
)


@dataclass
class FakeLoad:
    """A consumer whose routing list let go of each instance at a given time."""

    until: dict[str, float] = field(default_factory=dict)
    recorded: list[Record] = field(default_factory=list)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def records(self) -> list[Record]:
        return self.recorded

    def routable_until(self, instance: str) -> float | None:
        return self.until.get(instance)


POD = "127.0.0.1:8080"


def test_bound_counts_a_routing_list_that_sent_nothing() -> None:
    """At a low rate the last request comes early; the list held the pod for longer."""
    records = [Record(start=100.5, end=100.75, instance=POD, outcome="ok")]
    loads = [FakeLoad({POD: 104.0}), FakeLoad({POD: 109.0}), FakeLoad()]
    assert _bound(records, POD, 100.0) == 0.75
    assert _routable_bound(loads, POD, 100.0) == 9.0
    assert _routable_bound([FakeLoad()], POD, 100.0) == 0.0
    # A list that let go before t0 adds nothing.
    assert _routable_bound([FakeLoad({POD: 99.0})], POD, 100.0) == 0.0


def test_bound_is_when_the_last_request_was_answered() -> None:
    """A long request that started before the preStop counts until it ended, not as a
    duration added to the last start."""
    records = [
        Record(start=98.0, end=100.1, instance=POD, outcome="ok"),
        Record(start=100.5, end=100.6, instance=POD, outcome="ok"),
        Record(start=99.0, end=101.5, instance="other:1", outcome="ok"),
    ]
    assert _bound(records, POD, 100.0) == pytest.approx(0.6)


def test_app_stop_is_from_the_shutdown_to_the_port_closing() -> None:
    assert _app_stop([("shutdown", 10.0), ("port_closed", 10.6)]) == pytest.approx(0.6)
    assert _app_stop([("sigterm", 5.0), ("port_closed", 5.2)]) == pytest.approx(0.2)
    assert _app_stop([("port_closed", 5.0), ("sigterm", 6.0)]) == 0.0
    assert _app_stop([]) == 0.0


def test_notify_gives_the_agent_the_consumers_actuator() -> None:
    with NacosLab(RolloutSettings()) as quiet:
        assert "PRESTOP_CONSUMER_ACTUATOR" not in Kubelet(quiet.s, quiet).agent_env(8080, 20)
    with NacosLab(RolloutSettings(notify=True)) as told:
        env = Kubelet(told.s, told).agent_env(8080, 20)
    assert env["PRESTOP_CONSUMER_ACTUATOR"] == "http://{ip}:{port}/actuator"


def consumers(s: RolloutSettings) -> list[ConsumerConfig]:
    with NacosLab(s) as nacos:
        made = nacos.consumers()
        for c in made:
            c.stop()  # never started: this only closes its clients
    return [c.config for c in made]


def test_all_but_one_hides_the_endpoints_of_the_cached_consumer() -> None:
    every = consumers(RolloutSettings())
    assert all(c.management and c.expose_endpoints for c in every)
    s = RolloutSettings(consumer_endpoints="all-but-one")
    assert [c.name for c in consumers(s) if not c.expose_endpoints] == ["lb-cache"]


def test_settings_are_recorded(tmp_path: Path) -> None:
    s = RolloutSettings(notify=True, consumer_endpoints="all-but-one")
    write_json([RolloutResult("agent", 0, 0, {}, 0.0)], s, tmp_path / "rollout.json")
    settings = json.loads((tmp_path / "rollout.json").read_text())["settings"]
    assert (settings["notify"], settings["consumer_endpoints"]) == (True, "all-but-one")


def test_cli_options() -> None:
    result = CliRunner().invoke(lab, ["rollout", "--help"])
    assert "--notify / --no-notify" in result.output
    assert "--consumer-endpoints [all|all-but-one]" in result.output
    bad = CliRunner().invoke(lab, ["rollout", "--consumer-endpoints", "some"])
    assert bad.exit_code == 2
