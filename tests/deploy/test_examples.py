"""The manifests in examples/: lint-clean, valid Kubernetes, and consistent with the agent's CLI.

They are the Helm chart's renderings (deploy/render-examples.sh); tests/deploy/test_chart.py checks that
they are current and covers the mode x registry combinations they leave out.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from yamllint import linter
from yamllint.config import YamlLintConfig

from agent import config
from agent.cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("."))
VALUES = sorted((EXAMPLES / "values").glob("*.yaml"))
YAML_FILES = [*MANIFESTS, *VALUES, EXAMPLES / "application.yml", EXAMPLES / ".yamllint.yaml"]

NEWEST = "1.37"  # the newest schemas kubernetes-validate 1.37.0 bundles
# Oldest Kubernetes each example supports. 1.25 is the oldest schema kubernetes-validate bundles;
# native sidecars (an init container with restartPolicy: Always) are on by default from 1.29
# (alpha behind a feature gate in 1.28).
OLDEST = {"d-native-sidecar.yaml": "1.29"}
OLDEST_DEFAULT = "1.25"

GRACE_MARGIN_S = 5  # kubelet needs a few seconds after the hook for SIGTERM and the app's exit
DEFAULT_BUDGET_S = 25.0  # prestop's --budget default

# What the pod would give the agent, for the CLI checks: secrets and the downward API resolved.
FAKE_POD_IP = "10.0.0.7"
FAKE_SECRET = "placeholder"
LOOPBACK_NACOS = "127.0.0.1:8848"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _deployments() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in MANIFESTS:
        for doc in _documents(path):
            if doc["kind"] == "Deployment":
                yield path.name, doc


DEPLOYMENTS = dict(_deployments())


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = _pod(deployment)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _exec_prestops(deployment: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """(container, argv) of every exec preStop hook."""
    found = []
    for container in _containers(deployment):
        hook = container.get("lifecycle", {}).get("preStop", {})
        if "exec" in hook:
            found.append((container, hook["exec"]["command"]))
    return found


def _serve_sidecars(deployment: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """(container, argv) of every container that runs `prestop serve`."""
    found = []
    for container in _containers(deployment):
        argv = [*container.get("command", []), *container.get("args", [])]
        if "serve" in argv:
            found.append((container, argv))
    return found


def _agent_runs(deployment: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    return _exec_prestops(deployment) + _serve_sidecars(deployment)


def _subcommand_args(argv: list[str], subcommand: str) -> list[str]:
    """The arguments after the subcommand: `/opt/prestop/prestop drain --budget 40` → [--budget, 40]."""
    assert subcommand in argv, argv
    return argv[argv.index(subcommand) + 1 :]


def _budget(container: dict[str, Any], argv: list[str]) -> float:
    for i, arg in enumerate(argv):
        if arg == "--budget":
            return float(argv[i + 1])
        if arg.startswith("--budget="):
            return float(arg.split("=", 1)[1])
    for var in container.get("env", []):
        if var["name"] == "PRESTOP_BUDGET":
            return float(var["value"])
    return DEFAULT_BUDGET_S


EUREKA_ENV = "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"
LOOPBACK_EUREKA = "http://eureka:placeholder@127.0.0.1:8761/eureka/"


def _pod_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's env as the process would see it, with Nacos pointed at loopback."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = FAKE_SECRET
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[var["name"]] = FAKE_POD_IP
    if EUREKA_ENV in env:
        env[EUREKA_ENV] = LOOPBACK_EUREKA  # the Secret's value: service URLs with credentials
    else:
        env["NACOS_SERVER_ADDR"] = LOOPBACK_NACOS
    env["PRESTOP_LOG_TO_PID1"] = "false"
    return env


# ---------------------------------------------------------------------------------------------
# yamllint


@pytest.fixture(scope="module")
def yamllint_config() -> YamlLintConfig:
    return YamlLintConfig(file=str(EXAMPLES / ".yamllint.yaml"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_yamllint_strict_clean(path: Path, yamllint_config: YamlLintConfig) -> None:
    """`yamllint -s`: no errors and no warnings (duplicate keys, indentation, syntax)."""
    problems = list(linter.run(path.read_text(), yamllint_config, str(path)))
    assert problems == [], "\n".join(f"{path.name}:{p.line}:{p.column} {p}" for p in problems)


# ---------------------------------------------------------------------------------------------
# kubernetes-validate


def test_examples_exist() -> None:
    """The directory has the five Deployments and the Secrets (a glob matching nothing proves nothing)."""
    assert set(DEPLOYMENTS) == {
        "a-exec-baked-in.yaml",
        "b-init-copy.yaml",
        "c-sidecar.yaml",
        "d-native-sidecar.yaml",
        "e-eureka-exec.yaml",
    }
    assert (EXAMPLES / "secret.yaml") in MANIFESTS


@pytest.mark.parametrize(
    ("path", "version"),
    [
        (path, version)
        for path in MANIFESTS
        for version in (OLDEST.get(path.name, OLDEST_DEFAULT), NEWEST)
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    """Every document passes strict schema validation on the oldest and newest supported version."""
    for doc in _documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_native_sidecar_needs_1_29() -> None:
    """The native sidecar example's minimum version is real: 1.27 has no container restartPolicy."""
    doc = DEPLOYMENTS["d-native-sidecar.yaml"]
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(doc, "1.27", strict=True)


def test_validator_rejects_a_typo() -> None:
    """A misspelt field fails, so the validation above is really checking something."""
    doc = copy.deepcopy(DEPLOYMENTS["a-exec-baked-in.yaml"])
    _pod(doc)["containers"][0]["bogusField"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="bogusField"):
        kubernetes_validate.validate(doc, NEWEST, strict=True)


# ---------------------------------------------------------------------------------------------
# consistency between the manifests and the agent


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_grace_period_covers_the_budget(name: str) -> None:
    """terminationGracePeriodSeconds >= --budget + margin, for every agent run in the pod."""
    deployment = DEPLOYMENTS[name]
    runs = _agent_runs(deployment)
    assert runs, f"{name}: no exec preStop and no `prestop serve` container"
    grace = _pod(deployment)["terminationGracePeriodSeconds"]
    for container, argv in runs:
        budget = _budget(container, argv)
        assert grace >= budget + GRACE_MARGIN_S, f"{name}/{container['name']}: {grace} < {budget}+5"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_credentials_come_from_secrets(name: str) -> None:
    """No password, token or Nacos username is inlined: each is a secretKeyRef."""
    for container in _containers(DEPLOYMENTS[name]):
        for var in container.get("env", []):
            if any(word in var["name"] for word in ("PASSWORD", "TOKEN", "USERNAME")):
                assert "value" not in var, f"{name}/{container['name']}: {var['name']} inlined"
                assert "secretKeyRef" in var["valueFrom"], f"{name}: {var['name']}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_pod_ip_from_the_downward_api(name: str) -> None:
    """Every container that runs the agent has POD_IP = status.podIP (the instance's ip)."""
    for container, _ in _agent_runs(DEPLOYMENTS[name]):
        env = {var["name"]: var for var in container.get("env", [])}
        assert "POD_IP" in env, f"{name}/{container['name']}: no POD_IP"
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


EXEC_HOOKS = [
    pytest.param(argv, container, id=f"{name}/{container['name']}")
    for name, deployment in sorted(DEPLOYMENTS.items())
    for container, argv in _exec_prestops(deployment)
]
SIDECARS = [
    pytest.param(argv, container, id=f"{name}/{container['name']}")
    for name, deployment in sorted(DEPLOYMENTS.items())
    for container, argv in _serve_sidecars(deployment)
]


def test_every_mode_is_covered() -> None:
    assert len(EXEC_HOOKS) == 3  # a, b, and e (Eureka)
    assert len(SIDECARS) == 2


@pytest.mark.parametrize(("argv", "container"), EXEC_HOOKS)
def test_exec_prestop_is_accepted_by_the_cli(argv: list[str], container: dict[str, Any]) -> None:
    """The hook's command, plus --dry-run and the pod's env, runs and exits 0."""
    args = [*_subcommand_args(argv, "drain"), "--dry-run"]
    env = _pod_env(container)
    assert env["POD_IP"] == FAKE_POD_IP
    assert env["SPRING_APPLICATION_NAME"] == "orders"
    result = CliRunner().invoke(cli, ["drain", *args], env=env)
    assert result.exit_code == 0, result.output
    assert "dry_run_plan" in result.output


@pytest.fixture(scope="module")
def serve_help() -> str:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("argv", "container"), SIDECARS)
def test_sidecar_args_are_accepted_by_serve(
    argv: list[str], container: dict[str, Any], serve_help: str, tmp_path: Path
) -> None:
    """Each flag is one `prestop serve` documents, and the args and env make a valid config."""
    args = _subcommand_args(argv, "serve")
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in serve_help, arg
    # Parse as click would, then load the settings the way `serve` does, without serving.
    ctx = cli.commands["serve"].make_context("serve", list(args))
    env = _pod_env(container)
    if "PRESTOP_STATE_DIR" in env:
        env["PRESTOP_STATE_DIR"] = str(tmp_path)  # the pod's emptyDir, here
    cfg = config.load(ctx.params, env)
    side = config.load_sidecar(ctx.params, env, cfg)
    assert cfg.budget == _budget(container, argv)
    assert side.token == FAKE_SECRET  # PRESTOP_TOKEN came from the Secret


@pytest.mark.parametrize("name", ["c-sidecar.yaml", "d-native-sidecar.yaml"])
def test_hook_targets_the_sidecar(name: str) -> None:
    """The app's httpGet hook and readiness probe call the sidecar's port with the Secret's token."""
    deployment = DEPLOYMENTS[name]
    ((sidecar, argv),) = _serve_sidecars(deployment)
    listen = _subcommand_args(argv, "serve")
    port = int(listen[listen.index("--listen") + 1].rsplit(":", 1)[1])
    (app,) = [c for c in _pod(deployment)["containers"] if c is not sidecar]
    hook = app["lifecycle"]["preStop"]["httpGet"]
    assert (hook["port"], hook["path"]) == (port, "/prestop")
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    # The chart renders the token Secret beside the Deployment, from the same value.
    secrets = {
        d["metadata"]["name"]: d for d in _documents(EXAMPLES / name) if d["kind"] == "Secret"
    }
    ref = {v["name"]: v for v in sidecar["env"]}["PRESTOP_TOKEN"]["valueFrom"]["secretKeyRef"]
    token = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    headers = {h["name"]: h["value"] for h in hook["httpHeaders"]}
    assert headers["X-Prestop-Token"] == token


def test_init_container_install_subcommand() -> None:
    """Example (b)'s init container runs `install DEST` into the emptyDir the app mounts."""
    (init,) = _pod(DEPLOYMENTS["b-init-copy.yaml"])["initContainers"]
    assert init["args"][0] == "install"
    mounts = {m["mountPath"] for m in init["volumeMounts"]}
    assert init["args"][1] in mounts
    result = CliRunner().invoke(cli, [*init["args"], "--help"])
    assert result.exit_code == 0, result.output


def test_spring_settings() -> None:
    """application.yml enables what the agent uses: graceful shutdown and the three endpoints."""
    app = yaml.safe_load((EXAMPLES / "application.yml").read_text())
    assert app["server"]["shutdown"] == "graceful"
    assert app["management"]["endpoint"]["shutdown"]["access"] == "unrestricted"
    exposed = app["management"]["endpoints"]["web"]["exposure"]["include"].split(",")
    assert {"health", "prometheus", "shutdown"} <= set(exposed)
    # Management stays on the app port, so no example needs --actuator-url.
    assert "server" not in app["management"]
    for name, deployment in DEPLOYMENTS.items():
        for _, argv in _agent_runs(deployment):
            assert not any(a.startswith("--actuator-url") for a in argv), name


def test_sidecar_args_match_the_image_entrypoint() -> None:
    """Dockerfile.sidecar's ENTRYPOINT is `prestop`: the examples' args start at the subcommand."""
    dockerfile = (EXAMPLES.parent / "container" / "Dockerfile.sidecar").read_text()
    assert 'ENTRYPOINT ["prestop"]' in dockerfile
    for name in ("c-sidecar.yaml", "d-native-sidecar.yaml"):
        for container, argv in _serve_sidecars(DEPLOYMENTS[name]):
            assert "command" not in container
            assert argv[0] == "serve", f"{name}: {argv}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_budget_passes_the_preflight_arithmetic(name: str) -> None:
    """Every example's --budget and grace period pass `prestop check`'s grace findings."""
    from agent.check import GraceNeeds, exit_code, grace_findings

    grace = float(_pod(DEPLOYMENTS[name])["terminationGracePeriodSeconds"])
    for container, argv in _agent_runs(DEPLOYMENTS[name]):
        eureka = any(v["name"] == EUREKA_ENV for v in container.get("env", []))
        # The defaults `prestop check` plans with: Nacos 35.5 s or Eureka 95 s of staleness.
        needs = GraceNeeds(staleness=95.0 if eureka else 35.5, quiet=6.9, shutdown=5.0)
        budget = _budget(container, argv)
        max_wait = 105 if eureka else 60  # the registry's default --max-wait
        findings = grace_findings(needs, budget=budget, max_wait=max_wait, grace=grace)
        assert exit_code(findings) == 0, [f.line() for f in findings]


def test_eureka_service_url_comes_from_a_secret() -> None:
    """The Eureka URLs may carry user:password@: example (e) reads them from a Secret."""
    (container, _), *_ = _exec_prestops(DEPLOYMENTS["e-eureka-exec.yaml"])
    (var,) = [v for v in container["env"] if v["name"] == EUREKA_ENV]
    assert "secretKeyRef" in var["valueFrom"]
