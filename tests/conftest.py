"""Shared fixtures: an isolated environment, a fake clock, and log capture; and the tiers' rule
that only a test marked ``slow`` may start a process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

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


# Every way a test could start a process, directly or through subprocess.run, asyncio or a
# library: the fast tier promises none, so its time and its green are not at the mercy of load.
_SPAWNERS = (
    (subprocess, "Popen"),
    (os, "system"),
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
)


@contextmanager
def _processes_only_when_slow(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("slow"):
        yield
        return

    def refuse(name: str) -> Any:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            pytest.fail(
                f"{item.nodeid} starts a process ({name}{args[:1]!r}) but is not marked slow: "
                "add @pytest.mark.slow, or fake the process"
            )

        return refused

    with pytest.MonkeyPatch.context() as patch:
        for module, name in _SPAWNERS:
            if hasattr(module, name):
                patch.setattr(module, name, refuse(name))
        yield


# Hooks rather than an autouse fixture: they also cover module and session fixtures set up for
# the item (a server fixture starts before any function-scoped fixture could patch).
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("real") and not item.get_closest_marker("slow"):
        pytest.fail(f"{item.nodeid} is marked real but not slow: add @pytest.mark.slow")
    with _processes_only_when_slow(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _processes_only_when_slow(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    with _processes_only_when_slow(item):
        return (yield)
