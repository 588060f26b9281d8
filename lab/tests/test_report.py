"""The rollout report, drawn from synthetic results: fast, no processes."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prestop_lab import report
from prestop_lab.consumer import Record
from prestop_lab.progress import Progress
from prestop_lab.rollout import (
    Kubelet,
    LabRegistry,
    PodEvent,
    PodResult,
    RolloutResult,
    RolloutSettings,
    render,
    write_json,
)

RATE = 60.0  # requests per second over all pods
NEW_READY_S = 1.0  # a new pod is ready this long after its start


def synthetic(strategy: str, drain_s: float, lost: bool, seed: int) -> RolloutResult:
    """Three old pods replaced one by one; while an old pod drains, its traffic fades out; with
    ``lost`` consumers keep sending to it after its port closed, and those requests fail."""
    rng = random.Random(seed)
    started_at = 1000.0
    events: list[PodEvent] = []
    pods: list[PodResult] = []
    gone: dict[str, tuple[float, float]] = {}  # instance -> (preStop start, port closed)
    born: dict[str, float] = {}
    t = 0.0
    for n in (1, 2, 3):
        old, new = f"127.0.0.1:{40000 + n}", f"127.0.0.1:{41000 + n}"
        events += [PodEvent(f"new-{n}", new, "started", t)]
        t += NEW_READY_S
        born[new] = t
        events += [PodEvent(f"new-{n}", new, "ready", t)]
        closed = t + drain_s
        kinds = (
            [("sigterm", t), ("port_closed", t + 0.05)]
            if strategy == "none"
            else [
                ("prestop_start", t),
                ("take_out", t + 0.3),
                ("confirmed", t + 0.9),
                ("drain_end", closed - 0.4),
                ("shutdown", closed - 0.4),
                ("port_closed", closed),
                ("prestop_end", closed + 0.1),
            ]
        )
        events += [PodEvent(f"old-{n}", old, kind, at) for kind, at in kinds]
        gone[old] = (t, t + 0.05 if strategy == "none" else closed)
        pods.append(PodResult(old, drain_s, drain_s * 0.8, 1.25, 0, 0, False, pod=f"old-{n}"))
        t = gone[old][1] + 0.2
    end = t + 1.0
    records: list[Record] = []
    now = -2.5
    while now < end:
        now += rng.expovariate(RATE)
        alive = [i for i, (began, _) in gone.items() if now < began + 1.5]
        alive += [i for i, at in born.items() if now >= at]
        dead = [i for i, (_, closed) in gone.items() if closed <= now < closed + 2.0]
        instance = rng.choice(alive + (dead if lost else []))
        outcome = "connect_refused" if instance in dead else "ok"
        records.append(Record(started_at + now, started_at + now + 0.02, instance, outcome))
    errors = sum(1 for r in records if r.outcome != "ok")
    result = RolloutResult(
        strategy,
        len(records),
        errors,
        {"connect_refused": errors} if errors else {},
        round(t, 3),
        pods,
        events,
    )
    result.records = records
    result.started_at = started_at
    return result


def results() -> list[RolloutResult]:
    return [
        synthetic("none", 0.05, lost=True, seed=1),
        synthetic("sleep", 9.0, lost=False, seed=2),
        synthetic("agent", 5.0, lost=False, seed=3),
    ]


def test_report_png_has_the_size_and_is_not_blank(tmp_path: Path) -> None:
    """The PNG is as large as planned, has a white background, and each strategy's panel is
    drawn: non-white pixels in every panel's band, several colours, red for the failures."""
    rs = results()
    written = report.write_report(rs, RolloutSettings(), tmp_path)
    assert [p.name for p in written] == ["rollout.png", "rollout.svg"]
    with Image.open(tmp_path / "rollout.png") as opened:
        assert opened.format == "PNG"
        pixels = np.asarray(opened.convert("RGB")).astype(int)
    height, width, _ = pixels.shape
    assert (width, height) == report.size_px(rs)
    assert width == 1500
    assert (pixels[2, 2] == 255).all()  # a white background
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # lines, fills, marks and text, not a flat image
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 100  # the failed requests
    # Every panel's lanes have drawing in them: traffic, marks, grid.
    for r, (top, bottom) in zip(rs, report.panel_bands(rs), strict=True):
        band = pixels[round(top * report.DPI) : round(bottom * report.DPI)]
        non_white = (band != 255).any(axis=2).mean()
        assert non_white > 0.05, (r.strategy, non_white)
    svg = (tmp_path / "rollout.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert ">old-1<" in svg  # lane names as text, not only as glyph paths
    assert ">new-3<" in svg


def test_lanes_name_old_pods_then_new_ones() -> None:
    """Lanes are old-1…, then new-1…; a failed request that reached no pod gets its own lane."""
    r = synthetic("none", 0.05, lost=True, seed=1)
    r.records.append(Record(r.started_at, r.started_at + 0.1, "-", "timeout"))
    assert [pod for pod, _ in report.lanes(r)] == [
        "old-1",
        "old-2",
        "old-3",
        "new-1",
        "new-2",
        "new-3",
        "no pod",
    ]


def test_rollout_json_names_every_strategy_and_the_report(tmp_path: Path) -> None:
    """rollout.json lists the strategies actually run (not the last one's name) and the
    report's files; events are there, the raw records and monotonic times are not."""
    rs = results()
    write_json(rs, RolloutSettings(strategy="agent"), tmp_path / "rollout.json", ["rollout.png"])
    doc = json.loads((tmp_path / "rollout.json").read_text())
    assert doc["settings"]["strategies"] == ["none", "sleep", "agent"]
    assert "strategy" not in doc["settings"]
    assert doc["report"] == ["rollout.png"]
    agent = doc["results"][2]
    assert "records" not in agent
    assert "started_at" not in agent
    assert agent["pods"][0]["pod"] == "old-1"
    assert {"pod": "old-1", "instance": "127.0.0.1:40001", "kind": "confirmed", "t": 1.9} in (
        agent["events"]
    )


def test_render_table_has_units() -> None:
    """The final table says what its numbers are: req and s."""
    text = render(results(), RolloutSettings())
    header, *rows = text.splitlines()[2:]
    assert "worst drain/bound" in header
    agent = next(row for row in rows if row.startswith("agent"))
    assert " req" in agent
    assert agent.rstrip().endswith(" s")
    assert "5.0/4.0, 5.0/4.0, 5.0/4.0 s" in agent


def test_rollout_command_writes_the_report_and_json_is_quiet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`prestop lab rollout` writes rollout.json naming the report's files, prints a table
    and progress lines; with `--json` it prints the document and no progress line."""
    from prestop_lab import cli

    seen: list[Progress] = []

    def fake_run_all(runs: list[RolloutSettings], progress: Progress) -> list[RolloutResult]:
        seen.append(progress)
        return results()

    monkeypatch.setattr(cli, "_run_all", fake_run_all)
    runner = CliRunner()
    out = tmp_path / "out"
    done = runner.invoke(cli.lab, ["rollout", "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    assert done.stderr == ""
    doc = json.loads(done.stdout)
    assert doc["settings"]["strategies"] == ["none", "sleep", "agent"]
    assert doc["report"] == ["rollout.png", "rollout.svg"]
    assert json.loads((out / "rollout.json").read_text())["report"] == doc["report"]
    assert (out / "rollout.png").stat().st_size > 10_000
    done = runner.invoke(cli.lab, ["rollout", "--out", str(out), "--table"])
    assert done.exit_code == 0, done.output
    assert [p.enabled for p in seen] == [False, True]
    assert "worst drain/bound" in done.stdout
    assert str(out / "rollout.png") in done.stdout
    assert "lab: drawing the report" in done.stderr
    # Piped (CliRunner's stdout is no terminal) and no --table: the JSON document.
    piped = runner.invoke(cli.lab, ["rollout", "--out", str(out)])
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["report"] == doc["report"]


def test_agent_marks_count_back_from_the_summary_time() -> None:
    """The agent's take-out, confirm and drain end are placed by its summary: its log time,
    minus the later phases' durations; without a readable time, from the preStop's end."""
    kubelet = Kubelet(RolloutSettings(), cast(LabRegistry, None))
    phases = {
        "take_out": {"outcome": "ok", "duration_s": 0.5},
        "confirm": {"outcome": "ok", "duration_s": 1.0, "time_to_invisible_s": 1.0},
        "drain": {"outcome": "ok", "duration_s": 4.0},
        "shutdown": {"outcome": "ok", "duration_s": 0.6, "how": "actuator"},
    }
    before = time.monotonic()
    ended = before + 2.0  # the process exit comes after the summary line
    stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    paused = time.monotonic() - before  # however long this test was paused between its clocks
    kubelet._mark_phases(1, {"phases": phases, "timestamp": stamp}, ended)
    kubelet._mark_phases(2, {"phases": phases, "timestamp": "garbage"}, ended)
    by_time = dict(kubelet.marks[1])
    assert by_time["drain_end"] == by_time["shutdown"]
    assert by_time["confirmed"] - by_time["take_out"] == pytest.approx(1.0)
    assert by_time["drain_end"] - by_time["confirmed"] == pytest.approx(4.0)
    # 2.6 s before the end, less however long this test was paused between its two clocks.
    assert 2.6 - paused - 0.01 <= ended - by_time["drain_end"] <= 2.6 + 0.01
    fallback = dict(kubelet.marks[2])
    assert ended - fallback["drain_end"] == pytest.approx(0.6)
