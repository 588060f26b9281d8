"""Differential checks: each scripted sequence against the emulator and the real server.

Every difference must be fixed in the emulator or listed in ``differential.KNOWN`` with its
reason (docs/differences.md). The real servers come from ``lab/java/build.sh``; a jar that is
not built fails the test with the reason (``JavaLabMissing``), it is never skipped. Each real
server starts once per module (a 3.x Nacos takes ~30 s or more on 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prestop_lab import differential as d
from prestop_lab.real import EurekaPeers, NacosServer


@pytest.mark.parametrize(
    ("registry", "flavour"), [("nacos", "2.x"), ("nacos", "3.x"), ("eureka", "-")]
)
def test_emulator_against_itself_has_no_differences(registry: d.Registry, flavour: str) -> None:
    """The runner and the comparison: two fresh emulators answer alike (info rows aside)."""
    ctx = d.fresh_context()

    def run() -> list[d.Result]:
        manager = (
            d.eureka_emulator_target()
            if registry == "eureka"
            else d.nacos_emulator_target(flavour, "pw")
        )
        with manager as target:
            return d.run_sequence(target, registry, flavour, ctx)

    first, second = run(), run()
    diffs = [x for x in d.compare(registry, flavour, first, second) if x.verdict != "info"]
    assert diffs == []
    assert all(r.until_met in (None, True) for r in first), d.steps_rows(first, second, [])


@pytest.fixture
def nacos_2x(real_nacos2: NacosServer) -> NacosServer:
    return real_nacos2


@pytest.fixture
def nacos_3x(real_nacos3: NacosServer) -> NacosServer:
    return real_nacos3


@pytest.fixture(scope="module")
def eureka_peers() -> Iterator[EurekaPeers]:
    with EurekaPeers(cache_interval_s=1.0) as peers:
        yield peers


def _check(registry: d.Registry, flavour: str, real: d.Target) -> list[d.Diff]:
    emu, got, diffs = d.run_pair(registry, flavour, real)
    table = d.render(f"{registry} {flavour}", emu, got, diffs)
    bad = d.unlisted(diffs)
    assert not bad, f"unlisted differences:\n{table}"
    # Both sides ran the whole sequence and met every polled condition the same way.
    assert [r.step for r in emu] == [r.step for r in got]
    return diffs


def _still_seen(registry: d.Registry, flavour: str, diffs: list[d.Diff]) -> None:
    """Every KNOWN entry for this registry/flavour still shows up (no stale reasons)."""
    seen = {(x.step, x.aspect) for x in diffs}
    stale = [
        (k.step, k.aspect)
        for k in d.KNOWN
        if k.registry == registry and flavour in k.flavours and (k.step, k.aspect) not in seen
    ]
    assert not stale, f"listed differences no longer seen (remove them from KNOWN): {stale}"


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_nacos_2x_matches_real(nacos_2x: NacosServer) -> None:
    diffs = _check("nacos", "2.x", d.nacos_real_target(nacos_2x))
    _still_seen("nacos", "2.x", diffs)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_nacos_3x_matches_real(nacos_3x: NacosServer) -> None:
    diffs = _check("nacos", "3.x", d.nacos_real_target(nacos_3x))
    _still_seen("nacos", "3.x", diffs)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_eureka_matches_real(eureka_peers: EurekaPeers) -> None:
    diffs = _check("eureka", "-", d.eureka_real_target(eureka_peers))
    _still_seen("eureka", "-", diffs)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_nacos_2x_disable_keeps_weight_and_metadata(nacos_2x: NacosServer) -> None:
    """The agent's PATCH (enabled=false + weight) keeps weight 3 and metadata on the real server."""
    got = {r.step: r for r in d.run_sequence(d.nacos_real_target(nacos_2x), "nacos", "2.x")}
    after = got["admin_catalog_after_disable"]
    assert after.until_met, after.text
    assert after.get("list[us].weight") == 3.0
    assert after.get("list[us].metadata") == {"zone": "a", "ver": "1"}
    assert got["consumer_list_after_disable"].until_met


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(600)
def test_nacos_3x_v1_writes_answer_410(nacos_3x: NacosServer) -> None:
    """The agent switches to v3 on a 410 from a v1 write; the real 3.1 server must say so."""
    got = {r.step: r for r in d.run_sequence(d.nacos_real_target(nacos_3x), "nacos", "3.x")}
    assert got["v1_patch"].status == 410, got["v1_patch"].text
    assert got["v1_put"].status == 410, got["v1_put"].text
