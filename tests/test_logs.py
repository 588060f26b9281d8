"""Log lines also reach PID 1's stdout (the container's log stream) when asked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agent import logs


def test_lines_are_copied_to_pid1_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With to_pid1, every line is also written, as JSON, to PID 1's stdout."""
    target = tmp_path / "pid1-stdout"
    target.write_text("")
    monkeypatch.setattr(logs, "PID1_STDOUT", str(target))
    comm = tmp_path / "comm"
    comm.write_text("java\n")  # the container's own process
    monkeypatch.setattr(logs, "PID1_COMM", str(comm))
    console = io.StringIO()
    logs.configure(log_format="console", to_pid1=True, stream=console)
    logs.get_logger().info("instance_taken_out", weight=2.0)
    line = json.loads(target.read_text().strip())
    assert line["event"] == "instance_taken_out"
    assert "instance_taken_out" in console.getvalue()
    logs.configure(log_format="json", to_pid1=False, stream=io.StringIO())


def test_no_copy_when_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-log-to-pid1 writes nothing there."""
    target = tmp_path / "pid1-stdout"
    target.write_text("")
    monkeypatch.setattr(logs, "PID1_STDOUT", str(target))
    logs.configure(log_format="json", to_pid1=False, stream=io.StringIO())
    logs.get_logger().info("x")
    assert target.read_text() == ""


@pytest.mark.parametrize("init", ["systemd", "init"])
def test_no_copy_when_pid1_is_a_machines_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, init: str
) -> None:
    """On a VM or a laptop PID 1 is the machine's init: its console is not the pod's log."""
    target = tmp_path / "pid1-stdout"
    target.write_text("")
    comm = tmp_path / "comm"
    comm.write_text(init + "\n")
    monkeypatch.setattr(logs, "PID1_STDOUT", str(target))
    monkeypatch.setattr(logs, "PID1_COMM", str(comm))
    logs.configure(log_format="json", to_pid1=True, stream=io.StringIO())
    logs.get_logger().info("x")
    assert target.read_text() == ""
    logs.configure(log_format="json", to_pid1=False, stream=io.StringIO())


def test_no_copy_in_a_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run changes nothing, so it writes nothing into the pod's log."""
    from agent.cli import main

    target = tmp_path / "pid1-stdout"
    target.write_text("")
    comm = tmp_path / "comm"
    comm.write_text("java\n")
    monkeypatch.setattr(logs, "PID1_STDOUT", str(target))
    monkeypatch.setattr(logs, "PID1_COMM", str(comm))
    for name, value in {
        "PRESTOP_NACOS_ADDR": "127.0.0.1:1",
        "PRESTOP_SERVICE": "orders",
        "PRESTOP_IP": "10.0.0.5",
        "PRESTOP_LOG_TO_PID1": "true",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        main(["drain", "--dry-run"])
    assert done.value.code == 0
    assert target.read_text() == ""
