"""The one Deadline: ``--budget`` becomes it one way, less the exit margin, in every command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent.deadline import EXIT_MARGIN, Deadline
from agent.exceptions import DeadlineExceeded
from tests.fakes import FakeClock


def test_a_budget_keeps_the_exit_margin(clock: FakeClock) -> None:
    deadline = Deadline.for_budget(clock, 25.0)
    assert deadline.remaining() == pytest.approx(25.0 - EXIT_MARGIN)
    assert Deadline.for_budget(clock, 0.2).remaining() == 0.0


def test_no_time_left_is_raised_one_way(clock: FakeClock) -> None:
    deadline = Deadline.for_budget(clock, 1.0)
    assert deadline.left_for("a call", 3.0) == pytest.approx(1.0 - EXIT_MARGIN)
    clock.sleep(1.0)
    with pytest.raises(DeadlineExceeded, match="no time left for a call"):
        deadline.left_for("a call")


def test_every_budget_deadline_is_built_by_for_budget() -> None:
    """No command turns the budget into a Deadline by hand (and so without the margin)."""
    agent = Path(__file__).resolve().parents[1] / "agent"
    by_hand = []
    for path in set(agent.rglob("*.py")) - {agent / "deadline.py"}:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "after"
                and "budget" in ast.unparse(node)
            ):
                by_hand.append(f"{path.name}:{node.lineno}")
    assert by_hand == []
