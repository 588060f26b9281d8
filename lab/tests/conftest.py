"""The lab's tests share the core tests' isolation (no app variables, no PID 1 writes), and the
real servers: each starts once per session, on first use, because a real Nacos 3.x takes about
30 s to start on two cores. Only a test marked ``slow`` may start a process (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prestop_lab.real import EurekaPeers, NacosServer
from tests.conftest import (
    _fresh_logging,
    _isolated_env,
    fixture_clock,
    pytest_runtest_call,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)

__all__ = [
    "_fresh_logging",
    "_isolated_env",
    "fixture_clock",
    "pytest_runtest_call",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
]

# Eureka's caches at the real-stack tests' time scale (0.25 × 30 s).
EUREKA_CACHE_S = 7.5


@pytest.fixture(name="real_nacos2", scope="session")
def fixture_real_nacos2() -> Iterator[NacosServer]:
    with NacosServer("2.x") as server:
        yield server


@pytest.fixture(name="real_nacos3", scope="session")
def fixture_real_nacos3() -> Iterator[NacosServer]:
    with NacosServer("3.x") as server:
        yield server


@pytest.fixture(name="real_eureka", scope="session")
def fixture_real_eureka() -> Iterator[EurekaPeers]:
    with EurekaPeers(cache_interval_s=EUREKA_CACHE_S) as peers:
        yield peers
