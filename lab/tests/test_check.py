"""`prestop check`: every finding it can report, against the emulator and a real demo app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from agent.check import Finding, GraceNeeds, exit_code, grace_findings
from agent.cli import cli
from prestop_lab import procs
from prestop_lab.demo import start_app
from prestop_lab.nacos_emulator import EmulatorConfig, NacosEmulator

# --- the grace arithmetic (pure) ---

NEEDS = GraceNeeds(staleness=35.5, quiet=6.9, shutdown=5.0)  # needs 49.4 s: budget 50


def levels(findings: list[Finding]) -> dict[str, str]:
    return {f.name: f.level for f in findings}


def test_budget_that_covers_the_needs_passes_and_suggests_a_grace_period() -> None:
    """Enough budget: ok, and the suggested terminationGracePeriodSeconds is budget + 5."""
    findings = grace_findings(NEEDS, budget=50, max_wait=60, grace=None)
    assert levels(findings) == {"budget": "ok", "grace": "ok"}
    assert "terminationGracePeriodSeconds: 55" in findings[-1].message
    assert exit_code(findings) == 0


def test_short_budget_fails_with_a_concrete_budget() -> None:
    """Too little budget: fail, naming the sum and the budget to use."""
    findings = grace_findings(NEEDS, budget=30, max_wait=60, grace=None)
    budget = next(f for f in findings if f.name == "budget")
    assert budget.level == "fail"
    assert "--budget 50" in budget.message
    assert "35.5" in budget.message  # the staleness term is shown
    assert exit_code(findings) == 1


def test_grace_shorter_than_budget_fails_with_a_suggestion() -> None:
    """terminationGracePeriodSeconds below budget + margin: kubelet would kill the hook."""
    findings = grace_findings(NEEDS, budget=50, max_wait=60, grace=30)
    grace = next(f for f in findings if f.name == "grace")
    assert grace.level == "fail"
    assert "terminationGracePeriodSeconds: 55" in grace.message


def test_grace_that_covers_the_budget_passes() -> None:
    """A grace period of budget + 5 s or more is fine."""
    assert levels(grace_findings(NEEDS, budget=50, max_wait=60, grace=55))["grace"] == "ok"


def test_max_wait_shorter_than_staleness_warns() -> None:
    """--max-wait below staleness + one quiet window would cut the drain short."""
    findings = grace_findings(NEEDS, budget=50, max_wait=20, grace=None)
    warn = next(f for f in findings if f.name == "max_wait")
    assert warn.level == "warn"
    assert "--max-wait 43" in warn.message


# --- against the emulator and a demo app ---


@pytest.fixture(scope="module", name="nacos")
def fixture_nacos() -> Iterator[NacosEmulator]:
    with NacosEmulator(
        EmulatorConfig(auth_enabled=True, users={"nacos": "pw"}, push_delay=0.1)
    ) as nacos:
        yield nacos


@pytest.fixture(scope="module", name="app_port")
def fixture_app(nacos: NacosEmulator) -> Iterator[int]:
    app, port = start_registered_app(nacos)
    yield port
    app.kill()


def registered(nacos: NacosEmulator, port: int) -> bool:
    """What `prestop status` reads (the admin view), not the emulator's internals."""
    result = CliRunner().invoke(cli, ["status"], env=agent_env(nacos.addr, port))
    return result.exit_code == 0 and '"registered": true' in result.stdout


def agent_env(nacos_addr: str, port: int) -> dict[str, str]:
    return {
        "PRESTOP_NACOS_ADDR": nacos_addr,
        "PRESTOP_SERVICE": "demo",
        "POD_IP": "127.0.0.1",
        "SERVER_PORT": str(port),
        "NACOS_USERNAME": "nacos",
        "NACOS_PASSWORD": "pw",
        "PRESTOP_LOG_TO_PID1": "false",
    }


def start_registered_app(nacos: NacosEmulator, *extra: str) -> tuple[procs.Proc, int]:
    port = procs.free_port()
    app = start_app(nacos.addr, port, 2, *extra)
    assert procs.wait_for(lambda: registered(nacos, port), 30)
    return app, port


def run_check(
    nacos_addr: str, port: int, *args: str, **env: str
) -> tuple[int, dict[str, str], str]:
    base = {**agent_env(nacos_addr, port), "PRESTOP_BUDGET": "50", "PRESTOP_HTTP_TIMEOUT": "1"}
    result = CliRunner().invoke(cli, ["check", *args], env={**base, **env})
    findings = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "warn", "fail"):
            findings[parts[1]] = parts[0]
    return result.exit_code, findings, result.stdout


@pytest.mark.slow
def test_healthy_pod_passes_every_finding(nacos: NacosEmulator, app_port: int) -> None:
    """Registered, login accepted, actuator and Prometheus exposed, budget enough: exit 0."""
    code, findings, out = run_check(nacos.addr, app_port, "--grace", "55")
    assert code == 0, out
    for name in ("config", "registry", "instance", "actuator", "shutdown", "signals"):
        assert findings[name] == "ok", out
    assert findings["budget"] == findings["grace"] == "ok"
    assert "prometheus" in out
    assert "pw" not in out  # the password never shows


@pytest.mark.slow
def test_wrong_password_is_a_login_finding(nacos: NacosEmulator, app_port: int) -> None:
    """A refused login is reported as such, with no secret in the line."""
    code, findings, out = run_check(nacos.addr, app_port, NACOS_PASSWORD="wrong-secret")
    assert code == 1
    assert findings["registry"] == "fail"
    assert "login refused" in out
    assert "wrong-secret" not in out


@pytest.mark.slow
def test_unreachable_registry_is_reported(app_port: int) -> None:
    """Nothing listens at the registry address."""
    code, findings, out = run_check(f"127.0.0.1:{procs.free_port()}", app_port)
    assert code == 1
    assert findings["registry"] == "fail"
    assert "not reachable" in out
    assert "instance" not in findings  # nothing more to say about the instance


@pytest.mark.slow
def test_instance_not_registered(nacos: NacosEmulator, app_port: int) -> None:
    """The right registry, a wrong port: the instance finding names the fix."""
    code, findings, out = run_check(nacos.addr, app_port, "--port", "1")
    assert code == 1
    assert findings["registry"] == "ok"
    assert findings["instance"] == "fail"
    assert "not registered" in out


@pytest.mark.slow
def test_disabled_instance_warns(nacos: NacosEmulator) -> None:
    """An instance out of service (e.g. a predecessor's ops record) is a warning."""
    app, port = start_registered_app(nacos)
    try:
        down = CliRunner().invoke(
            cli,
            ["down"],
            env=agent_env(nacos.addr, port),
        )
        assert down.exit_code == 0, down.output

        def admin_view_disabled() -> bool:
            status = CliRunner().invoke(cli, ["status"], env=agent_env(nacos.addr, port))
            return '"enabled": false' in status.stdout

        # The 2.x admin catalog, like consumers' lists, lags a write by the push delay.
        assert procs.wait_for(admin_view_disabled, 30)
        code, findings, out = run_check(nacos.addr, port)
        assert findings["instance"] == "warn", out
        assert "prestop up" in out
        assert code == 1
    finally:
        app.kill()


@pytest.mark.slow
def test_app_not_running(nacos: NacosEmulator) -> None:
    """Registered but nothing listens: actuator and signals fail."""
    port = procs.free_port()
    nacos.register("demo", "127.0.0.1", port)
    assert procs.wait_for(lambda: registered(nacos, port), 30)
    code, findings, out = run_check(nacos.addr, port, "--signals", "prometheus,actuator")
    assert code == 1
    assert findings["instance"] == "ok", out
    assert findings["actuator"] == "fail"
    assert findings["signals"] == "fail"


@pytest.mark.slow
def test_shutdown_endpoint_not_exposed(nacos: NacosEmulator) -> None:
    """Actuator shutdown not exposed: the finding says which properties to set."""
    app, port = start_registered_app(nacos, "--expose", "health,prometheus")
    try:
        code, findings, out = run_check(nacos.addr, port)
        assert code == 1
        assert findings["shutdown"] == "fail"
        assert "management.endpoint.shutdown" in out
        assert findings["signals"] == "ok"
    finally:
        app.kill()


@pytest.mark.slow
def test_prometheus_not_exposed_fails_the_signal(nacos: NacosEmulator) -> None:
    """--signals prometheus with Prometheus not exposed: no traffic signal answers."""
    app, port = start_registered_app(nacos, "--expose", "health,shutdown")
    try:
        code, findings, out = run_check(nacos.addr, port, "--signals", "prometheus")
        assert code == 1
        assert findings["signals"] == "fail"
        assert "no traffic signal answered" in out
    finally:
        app.kill()


@pytest.mark.slow
def test_signal_target_missing(nacos: NacosEmulator, app_port: int) -> None:
    """--shutdown signal with no matching process."""
    code, findings, out = run_check(
        nacos.addr, app_port, "--shutdown", "signal", "--signal-target", "no-such-process-xyz"
    )
    assert code == 1
    assert findings["shutdown"] == "fail"
    assert "shareProcessNamespace" in out


@pytest.mark.slow
def test_budget_and_grace_findings_from_the_cli(nacos: NacosEmulator, app_port: int) -> None:
    """The grace arithmetic runs with the real config: short budget and grace both fail."""
    code, findings, out = run_check(
        nacos.addr, app_port, "--budget", "20", "--grace", "15", "--max-wait", "10"
    )
    assert code == 1
    assert findings["budget"] == "fail"
    assert findings["grace"] == "fail"
    assert findings["max_wait"] == "warn"
    assert "terminationGracePeriodSeconds: 55" in out


def test_bad_config_is_one_line_and_exit_2() -> None:
    """A bad value: one config finding naming the field, exit 2, nothing contacted."""
    result = CliRunner().invoke(
        cli,
        ["check", "--port", "abc"],
        env={"PRESTOP_NACOS_ADDR": "127.0.0.1:1", "PRESTOP_SERVICE": "demo", "POD_IP": "10.0.0.1"},
    )
    assert result.exit_code == 2
    lines = [line for line in result.stdout.splitlines() if line.startswith("fail")]
    assert len(lines) == 1
    assert "--port" in lines[0]


def test_eureka_staleness_needs_a_longer_budget() -> None:
    """With Eureka's ~95 s staleness the default budget fails, naming budget and grace."""
    from agent.check import grace_needs
    from agent.config import load

    cfg = load(
        {},
        {
            "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://eureka:8761/eureka/",
            "SPRING_APPLICATION_NAME": "orders",
            "POD_IP": "10.0.0.5",
        },
    )
    needs = grace_needs(cfg)
    assert needs.staleness == 95.0
    findings = grace_findings(needs, budget=cfg.budget, max_wait=cfg.max_wait, grace=29)
    budget = next(f for f in findings if f.name == "budget")
    assert budget.level == "fail"
    assert "--budget 109" in budget.message  # 95 + 6.9 + 5 + 2 = 108.9
    assert "terminationGracePeriodSeconds: 114" in budget.message
    assert levels(findings)["grace"] == "fail"


@pytest.mark.slow
def test_check_against_eureka() -> None:
    """The same preflight with --registry eureka: every finding ok with a budget for Eureka."""
    from prestop_lab.eureka_emulator import EurekaConfig, EurekaEmulator

    with EurekaEmulator(EurekaConfig(read_only_cache=False)) as eureka:
        port = procs.free_port()
        app = start_app(None, port, 2, "--eureka-url", eureka.url, "--eureka-renewal", "1")
        try:
            instance_id = f"pod-{port}:demo:{port}"
            assert procs.wait_for(lambda: eureka.instance("DEMO", instance_id) is not None, 30)
            env = {
                "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": eureka.url,
                "SPRING_APPLICATION_NAME": "demo",
                "POD_IP": "127.0.0.1",
                "SERVER_PORT": str(port),
                "PRESTOP_LOG_TO_PID1": "false",
            }
            ok = CliRunner().invoke(cli, ["check", "--budget", "110", "--grace", "115"], env=env)
            assert ok.exit_code == 0, ok.stdout
            assert "Eureka" in ok.stdout
            short = CliRunner().invoke(cli, ["check"], env=env)  # the default 25 s budget
            assert short.exit_code == 1
            assert "--budget 109 and terminationGracePeriodSeconds: 114" in short.stdout
        finally:
            app.kill()


@pytest.mark.slow
def test_output_is_only_the_findings(nacos: NacosEmulator, app_port: int) -> None:
    """stdout and stderr together: one line per finding plus the count, no log lines."""
    result = CliRunner().invoke(
        cli,
        ["check", "--grace", "55"],
        env={**agent_env(nacos.addr, app_port), "PRESTOP_BUDGET": "50"},
    )
    lines = result.output.splitlines()
    assert all(line.split(None, 1)[0] in ("ok", "warn", "fail", "check:") for line in lines), lines
    assert lines[-1].startswith("check: 9 ok")  # incl. what weights do for consumers


@pytest.mark.slow
def test_each_subscriber_is_a_consumer_finding(nacos: NacosEmulator, app_port: int) -> None:
    """--consumer-actuator: one line per subscriber; a consumer without endpoints is a warn
    that says the drain will fall back, and check evicts nothing."""
    from prestop_lab.consumer import Consumer, ConsumerConfig
    from prestop_lab.procs import wait_for

    def consumer(expose: bool) -> Consumer:
        return Consumer(
            ConsumerConfig(
                nacos_url=nacos.url,
                service="demo",
                discovery="watch",
                lb_cache_ttl=30.0,
                management=True,
                rate=1.0,
                path="/nothing",
                duration=60.0,
                username="nacos",
                password="pw",
                expose_endpoints=expose,
            )
        )

    told, closed = consumer(True), consumer(False)
    with told, closed:
        assert wait_for(lambda: told.routed() != [] and closed.routed() != [], 30)
        code, _, out = run_check(
            nacos.addr, app_port, "--consumer-actuator", "http://{ip}:{port}/actuator"
        )
        lines = [line for line in out.splitlines() if line.split()[1:2] == ["consumer"]]
        assert len(lines) == 2, out
        ok = [line for line in lines if line.startswith("ok")]
        warn = [line for line in lines if line.startswith("warn")]
        assert len(ok) == 1 and f"127.0.0.1:{told.management_port}" in ok[0]
        assert len(warn) == 1 and f"127.0.0.1:{closed.management_port}" in warn[0]
        assert "fall back to its quiet window" in warn[0]
        assert code == 1  # a warn makes check exit non-zero
        assert told.routed() != []  # nothing was evicted
