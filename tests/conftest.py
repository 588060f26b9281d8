"""Shared fixtures: an isolated environment, a fake clock, and log capture."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

from agent import logs
from tests.fakes import FakeClock

_APP_ENV_PREFIXES = ("PRESTOP_", "NACOS_", "SPRING_", "MANAGEMENT_", "EUREKA_")
_APP_ENV_NAMES = ("POD_IP", "podip", "SERVER_PORT")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the developer's or CI's app variables."""
    for name in list(os.environ):
        if name.startswith(_APP_ENV_PREFIXES) or name in _APP_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    # Tests must never write into the test runner's PID 1 stdout.
    monkeypatch.setenv("PRESTOP_LOG_TO_PID1", "false")


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands run in-process configure structlog for the whole process: undo it after."""
    yield
    structlog.reset_defaults()
    logs.forget_secrets()


@pytest.fixture(name="clock")
def fixture_clock() -> FakeClock:
    return FakeClock()
