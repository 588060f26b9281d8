"""Progress lines and the demo's final table: what a person reads during and after a lab run."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from prestop_lab import procs
from prestop_lab.demo import DemoResult, DemoSettings, drain_setter, render
from prestop_lab.progress import QUIET, Progress, describe

LINE = re.compile(r"^\[ *\d+\.\ds\] [a-z-]+: .+$")


def event(name: str, **fields: Any) -> str:
    return json.dumps({"event": name, "level": "info", **fields})


def test_progress_line_format() -> None:
    """`[  0.0s] who: what`, one line each, on the stream given; QUIET prints nothing."""
    out = io.StringIO()
    p = Progress(stream=out)
    p.say("agent", "old-2 preStop started")
    p.say("lab", "drawing the report")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0].endswith("] agent: old-2 preStop started")
    QUIET.say("agent", "nothing")  # disabled: no stream is touched


def test_agent_events_told_in_words() -> None:
    """The agent's JSON log events worth a line become short sentences with units."""
    assert describe(event("instance_invisible", time_to_invisible_s=0.607)) == (
        "consumers' list no longer has it (after 0.61 s)"
    )
    assert describe(event("drain_window", rate_before=18.321, quiet_window_s=0.377)) == (
        "draining: quiet window 0.38 s (18.3 req/s before the take-out)"
    )
    assert describe(event("phase_done", phase="drain", duration_s=2.011)) == (
        "drain done after 2.01 s"
    )
    assert describe(event("app_stopped", stopped_after_s=0.6)) == (
        "app stopped, port closed after 0.60 s"
    )
    assert describe(event("phase_done", phase="take_out", duration_s=0.01)) is None
    assert describe(event("drain_waiting", reason="min_wait")) is None
    assert describe("not json") is None
    assert describe("[1, 2]") is None


@pytest.mark.slow
def test_follower_tells_a_running_agent() -> None:
    """Lines a process prints while followed are told, with the pod's name, by the end of the
    block; lines it printed before are not."""
    popen = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    assert popen.wait(10) == 0
    proc = procs.Proc("fake-agent", popen)
    proc.lines.append(event("instance_taken_out", method="PATCH /v1/ns/instance"))
    out = io.StringIO()
    with Progress(stream=out).follow(proc, "agent", "old-1"):
        proc.lines.append(event("instance_invisible", time_to_invisible_s=0.5))
        proc.lines.append("a line that is not JSON")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith("agent: old-1 consumers' list no longer has it (after 0.50 s)")


def test_drain_setter_tells_min_wait_from_quiet_window() -> None:
    """A drain that ended at --min-wait says so; a longer one was set by the quiet window."""
    base: dict[str, Any] = {"reason": "quiet", "quiet_window_s": 0.377, "rate_before": 18.3}
    assert drain_setter({**base, "duration_s": 2.011}, 2.0).startswith("set by --min-wait 2 s")
    assert drain_setter({**base, "duration_s": 5.3}, 2.0).startswith(
        "set by the quiet window: 0.38 s without a new request"
    )
    assert "max-wait" in drain_setter({**base, "reason": "max_wait", "duration_s": 60}, 2.0)


def demo_result(errors: int = 0) -> DemoResult:
    summary = {
        "instance": "127.0.0.1:50913",
        "duration_s": 3.397,
        "phases": {
            "take_out": {
                "outcome": "ok",
                "duration_s": 0.008,
                "method": "PATCH /v1/ns/instance",
                "server_version": "2.5.1",
            },
            "confirm": {"outcome": "ok", "duration_s": 0.607, "time_to_invisible_s": 0.607},
            "drain": {
                "outcome": "ok",
                "duration_s": 2.011,
                "reason": "quiet",
                "requests_after_take_out": 0.0,
                "rate_before": 18.321,
                "quiet_window_s": 0.377,
            },
            "shutdown": {
                "outcome": "ok",
                "duration_s": 0.606,
                "how": "actuator",
                "detail": "POST http://127.0.0.1:50913/actuator/shutdown -> 200",
                "app_stopped": True,
                "stopped_after_s": 0.604,
            },
        },
    }
    return DemoResult(
        requests=343,
        ok=343 - errors,
        errors=errors,
        errors_by_kind={"connect_refused": errors} if errors else {},
        per_instance={"127.0.0.1:49399": 268, "127.0.0.1:50913": 75},
        agent_exit_code=0,
        agent_duration_s=3.84,
        time_to_invisible_s=0.607,
        drain_s=2.011,
        drain_reason="quiet",
        requests_after_take_out=0.0,
        shutdown_confirmed=True,
        app_exit_code=0,
        consumers_let_go={"127.0.0.1:37921": 1.27},
        drained_instance="127.0.0.1:50913",
        min_wait_s=2.0,
        summary=summary,
    )


def test_demo_table_names_the_instance_the_phases_and_what_set_the_drain() -> None:
    """No Python data: the drained ip:port, each phase with seconds, and why the drain ended."""
    text = render(demo_result(), DemoSettings())
    assert "{" not in text
    assert "drained   127.0.0.1:50913" in text
    assert "127.0.0.1:49399 kept serving" in text
    assert "343 req sent, 0 failed" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "0.61 s" in rows["confirm"]
    assert "0.61 s" in rows["shutdown"]
    assert "set by --min-wait 2 s" in rows["drain"]
    assert "of a 20 s budget" in rows["total"]
    assert "consumer 127.0.0.1:37921 let go of it 1.27 s into the drain" in text
    assert text.splitlines()[-1].endswith("PASS: zero lost requests")


def test_demo_table_says_why_it_failed() -> None:
    text = render(demo_result(errors=3), DemoSettings())
    assert "343 req sent, 3 failed (3 connect refused)" in text
    assert text.splitlines()[-1].endswith("FAIL: 3 requests failed")


def test_lab_json_alone_prints_json_and_with_a_path_writes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`prestop lab --json`: JSON on stdout instead of the table, no progress lines;
    `--json PATH`: the file, and the table on stdout."""
    from prestop_lab import demo
    from prestop_lab.cli import lab

    seen: list[Progress] = []

    def fake_run_demo(settings: DemoSettings, progress: Progress) -> DemoResult:
        seen.append(progress)
        return demo_result()

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    runner = CliRunner()
    result = runner.invoke(lab, ["--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["result"]["drained_instance"] == "127.0.0.1:50913"
    path = tmp_path / "demo.json"
    result = runner.invoke(lab, ["--json", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["result"]["requests"] == 343
    assert "drained   127.0.0.1:50913" in result.stdout
    result = runner.invoke(lab, [])
    assert result.exit_code == 0, result.output
    assert [p.enabled for p in seen] == [False, False, True]
