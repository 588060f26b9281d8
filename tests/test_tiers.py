"""The fast tier starts no process: tests/conftest.py refuses one in a test not marked slow."""

from __future__ import annotations

import os
import subprocess

import pytest


def test_a_fast_test_cannot_start_a_process() -> None:
    with pytest.raises(pytest.fail.Exception, match="but is not marked slow"):
        subprocess.run(["true"], check=False)
    with pytest.raises(pytest.fail.Exception, match=r"starts a process \(system"):
        os.system("true")  # noqa: S605 (refused before any shell runs)


@pytest.mark.slow
def test_a_slow_test_can() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
