"""The lab's tests share the core tests' isolation: no app variables, no PID 1 writes."""

from __future__ import annotations

from tests.conftest import _fresh_logging, _isolated_env, fixture_clock

__all__ = ["_fresh_logging", "_isolated_env", "fixture_clock"]
