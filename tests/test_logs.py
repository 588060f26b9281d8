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
