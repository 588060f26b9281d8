"""The official Python client (nacos-sdk-python, gRPC) against real Nacos 2.x and 3.x.

An instance registered through the SDK with weight 3 and metadata is taken out by the real agent
(``prestop down``) and put back (``prestop up``); the server keeps its weight and metadata, and
an SDK subscriber is pushed the list without it. Needs the jars of ``lab/java/build.sh``: a
missing jar fails the test with the reason (never a skip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from prestop_lab import procs
from prestop_lab.push_delay import SdkSubscriber, admin_instance, start_sdk_app
from prestop_lab.real import NACOS_USER, SERVICE, NacosServer

pytestmark = [pytest.mark.slow, pytest.mark.real, pytest.mark.timeout(600)]

WEIGHT = 3.0
METADATA = {"zone": "lab-a", "version": "7", "team": "orders"}


@pytest.fixture(name="server", params=["2.x", "3.x"])
def fixture_server(request: pytest.FixtureRequest) -> NacosServer:
    """The session's real server of each flavour (lab/tests/conftest.py)."""
    name = "real_nacos2" if request.param == "2.x" else "real_nacos3"
    server: NacosServer = request.getfixturevalue(name)
    return server


@pytest.fixture(name="app")
def fixture_app(server: NacosServer) -> Iterator[int]:
    """A Python app registered through the SDK, weight 3 with metadata; yields its port."""
    port = procs.free_port()
    proc = start_sdk_app(server, port, WEIGHT, METADATA)
    try:
        assert procs.wait_for(lambda: admin_instance(server, port) is not None, 30, 0.2), "\n".join(
            proc.lines[-20:]
        )
        yield port
    finally:
        proc.popen.terminate()
        if proc.wait(15) is None:
            proc.kill()


def prestop(command: str, server: NacosServer, port: int) -> tuple[int, list[dict[str, Any]]]:
    """The real agent as a subprocess; returns its exit code and its JSON log events."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRESTOP_")}
    env = {
        **base,
        "PRESTOP_NACOS_ADDR": server.addr,
        "PRESTOP_SERVICE": SERVICE,
        "PRESTOP_IP": "127.0.0.1",
        "PRESTOP_PORT": str(port),
        "PRESTOP_USERNAME": NACOS_USER,
        "PRESTOP_PASSWORD": server.password,
        "PRESTOP_LOG_FORMAT": "json",
        "PRESTOP_LOG_TO_PID1": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "agent", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (result.stdout + "\n" + result.stderr).splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert result.returncode == 0, f"prestop {command} -> {result.returncode}\n{result.stderr}"
    return result.returncode, events


def wait_state(server: NacosServer, port: int, enabled: bool) -> dict[str, Any]:
    """Poll the admin view until the instance's enabled flag is ``enabled`` (bounded)."""
    seen: dict[str, Any] | None = None
    end = time.monotonic() + 15
    while time.monotonic() < end:
        seen = admin_instance(server, port)
        if seen is not None and seen.get("enabled") is enabled:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"instance {port} not enabled={enabled} within 15 s: {seen}")


def event_time(events: list[dict[str, Any]], name: str) -> float:
    """Wall-clock time of the agent's log event ``name`` (structlog ISO, UTC)."""
    for e in events:
        if e.get("event") == name:
            return datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no {name} event in {[e.get('event') for e in events]}")


def test_agent_takes_out_and_puts_back_sdk_instance(server: NacosServer, app: int) -> None:
    before = wait_state(server, app, enabled=True)
    assert before["weight"] == WEIGHT
    assert before["metadata"] == METADATA

    prestop("down", server, app)
    out = wait_state(server, app, enabled=False)
    assert out["weight"] == WEIGHT
    assert out["metadata"] == METADATA
    assert not any(h.get("port") == app for h in server.consumer_view())

    prestop("up", server, app)
    back = wait_state(server, app, enabled=True)
    assert back["weight"] == WEIGHT
    assert back["metadata"] == METADATA
    assert procs.wait_for(
        lambda: any(h.get("port") == app for h in server.consumer_view()), 15, 0.1
    )


def test_sdk_subscriber_is_pushed_the_take_out(
    server: NacosServer, app: int, record_property: Any
) -> None:
    subscriber = SdkSubscriber(server)
    try:
        first = subscriber.wait_push(0, app, present=True, timeout=30)
        assert any(h["weight"] == WEIGHT and h["metadata"] == METADATA for h in first.hosts)

        _, events = prestop("down", server, app)
        written = event_time(events, "registry_write")
        gone = subscriber.wait_push(first.mono, app, present=False, timeout=30)
        out_ms = (gone.t - written) * 1000
        # The write is logged after its answer, so a push can only come after it (clock jitter
        # aside): a push "before" the write would be a stale one.
        assert -50 < out_ms < 30_000

        _, events = prestop("up", server, app)
        written_back = event_time(events, "registry_write")
        back = subscriber.wait_push(gone.mono, app, present=True, timeout=30)
        in_ms = (back.t - written_back) * 1000
        assert -50 < in_ms < 30_000
        assert any(h["port"] == app and h["weight"] == WEIGHT for h in back.hosts)
    finally:
        subscriber.stop()
    record_property(f"push_delay_out_ms_{server.flavour}", round(out_ms, 1))
    record_property(f"push_delay_in_ms_{server.flavour}", round(in_ms, 1))
    print(
        f"nacos {server.flavour}: SDK push {out_ms:.0f} ms after take-out, {in_ms:.0f} ms after put-back"
    )
