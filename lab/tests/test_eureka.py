"""The Eureka adapter and `prestop drain --registry eureka`, against the Eureka emulator.

Covers what the agent relies on: OUT_OF_SERVICE on every server, verified live; apps/delta as
the consumers' view; partial and total server failure; the lease never cancelled while the app
runs and cancelled after it stopped; `up` without leaving UNKNOWN; JSON quirks; Basic auth and
CSRF-protected writes; no writes for an unregistered instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypedDict

import httpx
import pytest

from agent.config import EurekaServer, EurekaSettings
from agent.deadline import Deadline, SystemClock
from agent.exceptions import AuthError, InstanceNotFound, RegistryUnavailable
from agent.registry.eureka import EurekaRegistry, as_list, instances_in, overridden, port_of
from prestop_lab import procs
from prestop_lab.demo import start_app
from prestop_lab.eureka_client import EurekaInstance
from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

if TYPE_CHECKING:
    from typing_extensions import Unpack

APP = "ORDERS"


class Options(TypedDict, total=False):
    """The settings these tests vary."""

    instance_id: str | None
    hostname: str | None


def settings(*urls: str, port: int = 8080, **kw: Unpack[Options]) -> EurekaSettings:
    servers = []
    for url in urls:
        parts = httpx.URL(url)
        user = parts.username or None
        password = parts.password or None
        base = str(parts.copy_with(username=None, password=None))
        servers.append(EurekaServer(base, user, password))
    return EurekaSettings(
        servers=tuple(servers),
        app=APP,
        ip="10.0.0.5",
        port=port,
        app_name="orders",
        **kw,
    )


def registry(s: EurekaSettings, http: httpx.Client) -> EurekaRegistry:
    return EurekaRegistry(s, http, http_timeout=2.0)


def deadline(seconds: float = 10.0) -> Deadline:
    return Deadline.after(SystemClock(), seconds)


@pytest.fixture(name="http")
def fixture_http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


@pytest.fixture(name="pair")
def fixture_pair() -> Iterator[tuple[EurekaEmulator, EurekaEmulator]]:
    config = EurekaConfig(read_only_cache=False, replication_delay=0.1)
    with EurekaEmulator(config) as a, EurekaEmulator(EurekaConfig(**config.__dict__)) as b:
        a.add_peer(b)
        b.add_peer(a)
        yield a, b


def register_everywhere(*servers: EurekaEmulator, port: int = 8080, status: str = "UP") -> str:
    instance_id = f"orders-7d9c:orders:{port}"
    for server in servers:
        server.register(APP, instance_id, "10.0.0.5", port, status=status, hostname="orders-7d9c")
    return instance_id


# --- parsing quirks (pure) ---


def test_list_or_object_and_both_override_spellings() -> None:
    """One-element lists, bare objects, both override keys, ports as objects or strings."""
    one = {"instanceId": "a", "status": "UP", "port": {"$": 8080, "@enabled": "true"}}
    legacy = {"instanceId": "b", "overriddenstatus": "OUT_OF_SERVICE", "port": "9090"}
    as_array = {"applications": {"application": [{"name": APP, "instance": [one]}]}}
    as_object = {"applications": {"application": {"name": APP, "instance": legacy}}}
    assert [i["instanceId"] for i in instances_in(as_array)] == ["a"]
    assert [i["instanceId"] for i in instances_in(as_object, APP)] == ["b"]
    assert instances_in(as_object, "OTHER") == []
    assert as_list(None) == []
    assert port_of(one["port"]) == 8080
    assert port_of(legacy["port"]) == 9090
    assert overridden(legacy) == "OUT_OF_SERVICE"
    assert overridden({"overriddenStatus": "UNKNOWN"}) is None


# --- the adapter against emulated servers ---


def test_take_out_writes_every_server_and_verifies(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """OUT_OF_SERVICE with an override on both servers; the id was found by IP and port."""
    a, b = pair
    instance_id = register_everywhere(a, b)
    result = registry(settings(a.url, b.url), http).take_out(deadline())
    assert "2/2 servers" in result.method
    for server in (a, b):
        stored = server.instance(APP, instance_id)
        assert stored is not None
        assert stored["status"] == "OUT_OF_SERVICE"
        assert server.override(instance_id) == "OUT_OF_SERVICE"
    puts = [r for r in a.writes() if r.method == "PUT"]
    assert puts and all(r.query.get("value") == "OUT_OF_SERVICE" for r in puts)
    assert all("lastDirtyTimestamp" not in r.query for r in puts)


def test_one_server_down_fails_open_for_that_one(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """A dead second server: the live one is taken out, the result says 1/2."""
    a, _ = pair
    instance_id = register_everywhere(a)
    dead = f"http://127.0.0.1:{procs.free_port()}/eureka/"
    result = registry(settings(a.url, dead), http).take_out(deadline())
    assert "1/2 servers" in result.method
    stored = a.instance(APP, instance_id)
    assert stored is not None and stored["status"] == "OUT_OF_SERVICE"


def test_no_server_accepting_is_an_error(http: httpx.Client) -> None:
    """Both servers down: RegistryUnavailable (the sequence turns it into exit 3)."""
    dead = [f"http://127.0.0.1:{procs.free_port()}/eureka/" for _ in range(2)]
    with pytest.raises(RegistryUnavailable):
        registry(settings(*dead), http).take_out(deadline(5))


def test_unregistered_instance_is_never_written(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """Nobody at 10.0.0.5:8080: InstanceNotFound, and no write reached any server."""
    a, b = pair
    register_everywhere(a, b, port=9999)  # someone else
    with pytest.raises(InstanceNotFound):
        registry(settings(a.url, b.url), http).take_out(deadline())
    writes = [r for r in a.writes() + b.writes() if "/status" in r.path or r.method == "DELETE"]
    assert writes == []


def test_configured_id_is_confirmed_before_writing(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """A configured instance id that is not live: nothing written."""
    a, _ = pair
    with pytest.raises(InstanceNotFound):
        registry(settings(a.url, instance_id="ghost:orders:8080"), http).take_out(deadline())
    assert [r for r in a.writes() if "/status" in r.path] == []


def test_delta_is_the_consumers_view(http: httpx.Client) -> None:
    """With the read-only cache on, apps/delta shows the change only after a cache tick."""
    now = [1_000_000.0]
    with EurekaEmulator(EurekaConfig(cache_update_interval=30.0), clock=lambda: now[0]) as e:
        register_everywhere(e)
        reg = registry(settings(e.url), http)
        assert reg.visible_to_consumers(deadline())  # warms the hot key, as consumers do
        reg.take_out(deadline())
        assert reg.visible_to_consumers(deadline())  # the cached delta still shows UP
        now[0] += 30.0
        e.tick()
        assert not reg.visible_to_consumers(deadline())


def test_after_stop_cancels_everywhere_and_404_is_fine(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """The cancel reaches every server; a server that already lost the lease answers 404."""
    a, b = pair
    instance_id = register_everywhere(a, b)
    reg = registry(settings(a.url, b.url), http)
    reg.take_out(deadline())
    result = reg.after_stop(deadline())
    assert result is not None
    assert a.instance(APP, instance_id) is None
    assert a.override(instance_id) is None
    # A second cancel (hook delivered twice) meets 404 everywhere and still reports.
    assert reg.after_stop(deadline()) is not None


def test_up_removes_the_override_without_unknown(
    pair: tuple[EurekaEmulator, EurekaEmulator], http: httpx.Client
) -> None:
    """`prestop up`: UP again at once, override gone, never UNKNOWN."""
    a, b = pair
    instance_id = register_everywhere(a, b)
    reg = registry(settings(a.url, b.url), http)
    reg.take_out(deadline())
    reg.put_back(deadline())
    for server in (a, b):
        stored = server.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "UP"
        assert server.override(instance_id) is None


def test_up_after_a_stuck_out_of_service_without_override(http: httpx.Client) -> None:
    """Stored OUT_OF_SERVICE with no override (rule 3 keeps it): `up` still gets it UP."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as e:
        instance_id = register_everywhere(e, status="OUT_OF_SERVICE")
        assert e.override(instance_id) is None
        registry(settings(e.url), http).put_back(deadline())
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "UP"
        assert e.override(instance_id) is None


class Quirk(TypedDict, total=False):
    legacy_single_objects: bool
    legacy_lowercase_override: bool


@pytest.mark.parametrize(
    "quirk", [{"legacy_single_objects": True}, {"legacy_lowercase_override": True}]
)
def test_legacy_json_shapes(quirk: Quirk, http: httpx.Client) -> None:
    """Single objects instead of arrays, lower-case overriddenstatus: still found and verified."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False, **quirk)) as e:
        instance_id = register_everywhere(e)
        reg = registry(settings(e.url), http)
        reg.take_out(deadline())
        assert not reg.visible_to_consumers(deadline())
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "OUT_OF_SERVICE"


def test_v2_base_path(http: httpx.Client) -> None:
    """A service URL ending in /eureka/v2/ (Netflix layout, accepted by Spring Cloud ≥ 4)."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as e:
        instance_id = register_everywhere(e)
        registry(settings(e.url + "v2/"), http).take_out(deadline())
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "OUT_OF_SERVICE"


def test_basic_auth_from_userinfo(http: httpx.Client) -> None:
    """Credentials go in a Basic header; wrong ones are an AuthError."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False, users={"eu": "s3cret"})) as e:
        instance_id = register_everywhere(e)
        good = e.url.replace("http://", "http://eu:s3cret@")
        registry(settings(good), http).take_out(deadline())
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "OUT_OF_SERVICE"
        bad = e.url.replace("http://", "http://eu:wrong@")
        with pytest.raises(AuthError):
            registry(settings(bad), http).connect(deadline())


def test_csrf_protected_writes_are_refused(http: httpx.Client) -> None:
    """Reads work, writes answer 403: the take-out fails (the sequence fails open)."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False, csrf_protected_writes=True)) as e:
        instance_id = register_everywhere(e)
        with pytest.raises(RegistryUnavailable, match="403"):
            registry(settings(e.url), http).take_out(deadline())
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "UP"


# --- the whole sequence: `prestop drain --registry eureka` with real processes ---


def drain(env: dict[str, str]) -> tuple[int, list[dict[str, object]], str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PRESTOP_", "EUREKA_"))}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "drain"],
        env={**base, "PRESTOP_LOG_TO_PID1": "false", "PRESTOP_LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr


def agent_env(urls: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": urls,
        "SPRING_APPLICATION_NAME": "demo",
        "POD_IP": "127.0.0.1",
        "SERVER_PORT": str(port),
        "PRESTOP_MIN_WAIT": "0.3",
        "PRESTOP_QUIET_WINDOW": "0.5",
        "PRESTOP_CONFIRM_TIMEOUT": "3",
        "PRESTOP_BUDGET": "20",
        **extra,
    }


def eureka_app(emulator: EurekaEmulator, *extra: str) -> tuple[procs.Proc, int, str]:
    port = procs.free_port()
    app = start_app(None, port, 2, "--eureka-url", emulator.url, "--eureka-renewal", "0.5", *extra)
    instance_id = f"pod-{port}:demo:{port}"
    assert procs.wait_for(lambda: emulator.instance("DEMO", instance_id) is not None, 30)
    return app, port, instance_id


@pytest.mark.slow
def test_drain_takes_out_stops_then_cancels() -> None:
    """The lease is cancelled only after the app's port closed; exit 0."""
    with EurekaEmulator(EurekaConfig(cache_update_interval=0.5)) as e:
        app, port, instance_id = eureka_app(e)
        try:
            code, events, err = drain(agent_env(e.url, port))
            assert code == 0, err
            names = [ev["event"] for ev in events]
            assert names.index("app_stopped") < names.index("deregistered")
            summary = next(ev for ev in events if ev["event"] == "prestop_summary")
            phases = summary["phases"]
            assert isinstance(phases, dict)
            assert phases["deregister"]["outcome"] == "ok"
            assert phases["take_out"]["outcome"] == "ok"
            assert e.instance("DEMO", instance_id) is None
            # Order on the wire: the status PUT, then (after the stop) the cancel.
            writes = [(r.method, r.path) for r in e.writes() if r.method in ("PUT", "DELETE")]
            status_put = next(i for i, w in enumerate(writes) if w[1].endswith("/status"))
            cancel = max(
                i for i, w in enumerate(writes) if w[0] == "DELETE" and not w[1].endswith("/status")
            )
            assert status_put < cancel
        finally:
            app.kill()


@pytest.mark.slow
def test_lease_not_cancelled_while_the_app_runs() -> None:
    """An app that ignores the shutdown: no cancel, the override stays, exit 3."""
    with EurekaEmulator(EurekaConfig(cache_update_interval=0.5)) as e:
        app, port, instance_id = eureka_app(e, "--ignore-shutdown")
        try:
            code, events, err = drain(agent_env(e.url, port, PRESTOP_SHUTDOWN_TIMEOUT="1"))
            assert code == 3, err
            cancels = [
                r
                for r in e.writes()
                if r.method == "DELETE" and instance_id in r.path and not r.path.endswith("/status")
            ]
            assert cancels == []
            stored = e.instance("DEMO", instance_id)
            assert stored is not None and stored["status"] == "OUT_OF_SERVICE"
            assert "deregistered" not in [ev["event"] for ev in events]
        finally:
            app.kill()


@pytest.mark.slow
def test_drain_with_one_of_two_servers_down_succeeds() -> None:
    """One dead server in the list: fail open for it, exit 0; the app is stopped."""
    with EurekaEmulator(EurekaConfig(cache_update_interval=0.5)) as e:
        app, port, _ = eureka_app(e)
        try:
            dead = f"http://127.0.0.1:{procs.free_port()}/eureka/"
            code, events, err = drain(agent_env(f"{e.url},{dead}", port))
            assert code == 0, err
            assert any(ev["event"] == "eureka_server_failed" for ev in events)
            assert app.wait(5) is not None
        finally:
            app.kill()


@pytest.mark.slow
def test_drain_with_every_server_down_exits_3_and_still_stops_the_app() -> None:
    """No server accepted: exit 3, and the app was still drained and stopped."""
    port = procs.free_port()
    app = start_app(None, port, 2)
    try:
        dead = ",".join(f"http://127.0.0.1:{procs.free_port()}/eureka/" for _ in range(2))
        code, _, err = drain(agent_env(dead, port))
        assert code == 3, err
        assert app.wait(5) is not None
    finally:
        app.kill()


@pytest.mark.slow
def test_password_never_logged() -> None:
    """Userinfo in the service URL: used, and absent from every log line."""
    with EurekaEmulator(EurekaConfig(cache_update_interval=0.5, users={"eu": "pa55word"})) as e:
        port = procs.free_port()
        url = e.url.replace("http://", "http://eu:pa55word@")
        # Register directly (the lab app would need the credentials too).
        instance = EurekaInstance(url, "demo", "127.0.0.1", port, renewal_interval=0.5)
        app = start_app(None, port, 2)
        instance.start()
        try:
            code, _, err = drain(agent_env(url, port))
            assert code == 0, err
            assert "pa55word" not in err
        finally:
            instance.stop()
            app.kill()


def test_down_status_up_from_the_cli() -> None:
    """`prestop down`, `status` and `up` with --registry eureka, through the CLI."""
    from click.testing import CliRunner

    from agent.cli import cli

    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as e:
        instance_id = register_everywhere(e)
        env = {
            "PRESTOP_EUREKA_URL": e.url,
            "PRESTOP_SERVICE": "orders",
            "POD_IP": "10.0.0.5",
            "SERVER_PORT": "8080",
            "PRESTOP_LOG_TO_PID1": "false",
        }
        runner = CliRunner()
        assert runner.invoke(cli, ["down"], env=env).exit_code == 0
        assert e.override(instance_id) == "OUT_OF_SERVICE"
        status = runner.invoke(cli, ["status"], env=env)
        assert status.exit_code == 0
        info = json.loads(status.stdout)
        assert info["registry"] == "eureka"
        assert info["instance_id"] == instance_id
        assert info["consumer_visible"] is False
        assert runner.invoke(cli, ["up"], env=env).exit_code == 0
        stored = e.instance(APP, instance_id)
        assert stored is not None and stored["status"] == "UP"
        assert e.override(instance_id) is None


def test_without_delta_the_full_app_view_is_read(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with the delta disabled (403): the consumers' view comes from apps/{APP}."""
    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as e:
        register_everywhere(e)
        reg = registry(settings(e.url), http)
        original = e.api.handle

        def no_delta(
            method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
        ) -> tuple[int, bytes, dict[str, str]]:
            if path.endswith("/apps/delta"):
                return 403, b"", {}  # eureka.server.disable-delta=true
            return original(method, path, query, headers, body)

        monkeypatch.setattr(e.api, "handle", no_delta)
        assert reg.visible_to_consumers(deadline())
        reg.take_out(deadline())
        assert not reg.visible_to_consumers(deadline())
