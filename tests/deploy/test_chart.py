"""deploy/helm/prestop-agent: `helm lint`, every mode x registry rendered and validated strictly.

Also: the chart keeps the budget and the grace period consistent, writes one token into both
the sidecar's Secret and the hook's header, refuses what cannot work, and examples/*.yaml are
exactly its renderings (deploy/render-examples.sh). helm comes from `.ci/system-deps`
(`go install`); without it these tests fail and say how to install it.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from yamllint import linter
from yamllint.config import YamlLintConfig

from agent import config
from agent.check import DEFAULT_STALENESS, GRACE_MARGIN, GraceNeeds, exit_code, grace_findings
from agent.cli import cli
from agent.config import NacosSettings
from tests.deploy.test_examples import (
    FAKE_SECRET,
    _exec_prestops,
    _pod_env,
    _serve_sidecars,
    _subcommand_args,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "prestop-agent"
EXAMPLES = ROOT / "examples"
MODES = ("baked-in", "init-copy", "sidecar", "native-sidecar")
SIDECAR_MODES = ("sidecar", "native-sidecar")
REGISTRIES = ("nacos", "eureka")
COMBOS = [(mode, registry) for mode in MODES for registry in REGISTRIES]
COMBO_IDS = [f"{mode}-{registry}" for mode, registry in COMBOS]

# Kubernetes versions, explicitly: kubernetes-validate 1.37.0 bundles the 1.25..1.37 schemas.
# Native sidecars (an init container with restartPolicy: Always) are on by default from 1.29.
NEWEST = "1.37"
OLDEST = {"native-sidecar": "1.29"}
OLDEST_DEFAULT = "1.25"
KUBE_VERSION = "1.37.0"  # what `helm template` and `helm lint` render for

pytestmark = pytest.mark.slow  # every test runs helm (a process); the session fixture finds it


def _pinned_helm_version() -> str:
    match = re.search(r"^HELM_VERSION=(\S+)$", (ROOT / ".ci" / "system-deps").read_text(), re.M)
    assert match, ".ci/system-deps sets HELM_VERSION"
    return match.group(1)


def _find_helm() -> Path | None:
    """Where .ci/system-deps puts it ($(go env GOPATH)/bin), else $HELM, else helm on PATH."""
    candidates: list[Path] = []
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if Path(go).exists():
        gopath = subprocess.run(
            [go, "env", "GOPATH"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
        if gopath:
            candidates.append(Path(gopath) / "bin" / "helm")
    candidates.append(Path.home() / "go" / "bin" / "helm")
    if os.environ.get("HELM"):
        candidates.append(Path(os.environ["HELM"]))
    if on_path := shutil.which("helm"):
        candidates.append(Path(on_path))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="session")
def helm() -> Path:
    found = _find_helm()
    if found is None:
        version = _pinned_helm_version()
        pytest.fail(
            "helm not found (looked in $(go env GOPATH)/bin, ~/go/bin, $HELM and PATH): install "
            f"it with `sh .ci/system-deps`, i.e. `go install helm.sh/helm/v3/cmd/helm@{version}`"
        )
    return found


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A go-installed helm assumes Kubernetes 1.20 without a cluster, which the chart refuses.
    kube = () if "--kube-version" in args else ("--kube-version", KUBE_VERSION)
    return subprocess.run(
        [str(helm), *args, *kube], capture_output=True, text=True, timeout=60, check=False
    )


def template(helm: Path, *args: str) -> str:
    result = run_helm(helm, "template", "orders", str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def combo_args(mode: str, registry: str) -> tuple[str, ...]:
    return ("--set", f"mode={mode}", "--set", f"registry.type={registry}")


@cache
def _rendered(helm: Path, mode: str, registry: str) -> str:
    return template(helm, *combo_args(mode, registry))


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {doc["kind"]: doc for doc in docs}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    apps: list[dict[str, Any]] = [
        c for c in pod_spec(deployment)["containers"] if c["name"] == "orders"
    ]
    (app,) = apps
    return app


def env_value(container: dict[str, Any], name: str) -> str:
    (var,) = [v for v in container["env"] if v["name"] == name]
    value: str = var["value"]
    return value


def helm_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, "the rendering should have failed"
    return result.stderr


# ---------------------------------------------------------------------------------------------
# lint, render, validate


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_helm_lint_strict(helm: Path, mode: str, registry: str) -> None:
    """`helm lint --strict`: the chart, its values schema and this mode's templates."""
    result = run_helm(helm, "lint", "--strict", str(CHART), *combo_args(mode, registry))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


VALIDATIONS = [
    pytest.param(mode, registry, version, id=f"{mode}-{registry}-{version}")
    for mode, registry in COMBOS
    for version in (OLDEST.get(mode, OLDEST_DEFAULT), NEWEST)
]


@pytest.mark.parametrize(("mode", "registry", "version"), VALIDATIONS)
def test_rendering_is_valid_kubernetes(helm: Path, mode: str, registry: str, version: str) -> None:
    """Every rendered document passes `kubernetes-validate --strict` on the oldest and newest."""
    docs = documents(_rendered(helm, mode, registry))
    expected = {"Deployment", "Secret"} if mode in SIDECAR_MODES else {"Deployment"}
    assert set(by_kind(docs)) == expected
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_native_sidecar_rendering_needs_1_29(helm: Path) -> None:
    """The oldest version per mode is real: 1.27 has no container restartPolicy (1.28: alpha)."""
    deployment = by_kind(documents(_rendered(helm, "native-sidecar", "nacos")))["Deployment"]
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


def test_kubernetes_validate_command_line_strict(helm: Path, tmp_path: Path) -> None:
    """The `kubernetes-validate --strict` command itself accepts a rendering and rejects a typo."""
    exe = Path(sys.executable).parent / "kubernetes-validate"
    assert exe.is_file(), "pip install -e '.[dev]' installs kubernetes-validate"
    good = tmp_path / "good.yaml"
    good.write_text(_rendered(helm, "sidecar", "nacos"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("terminationGracePeriodSeconds", "terminationGrace"))
    for path, ok in ((good, True), (bad, False)):
        result = subprocess.run(
            [str(exe), "--strict", "--kubernetes-version", NEWEST, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode == 0) is ok, result.stdout + result.stderr


@pytest.fixture(scope="module")
def yamllint_config() -> YamlLintConfig:
    return YamlLintConfig(file=str(EXAMPLES / ".yamllint.yaml"))


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_rendering_is_yamllint_clean(
    helm: Path, mode: str, registry: str, yamllint_config: YamlLintConfig
) -> None:
    """What users read and commit is tidy: `yamllint -s` with the examples' config."""
    problems = list(linter.run(_rendered(helm, mode, registry), yamllint_config))
    assert problems == [], "\n".join(f"{p.line}:{p.column} {p}" for p in problems)


# ---------------------------------------------------------------------------------------------
# what each mode puts in the pod


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_mode_shape(helm: Path, mode: str, registry: str) -> None:
    """Where the agent runs and what the app's preStop hook is, per mode."""
    deployment = by_kind(documents(_rendered(helm, mode, registry)))["Deployment"]
    pod = pod_spec(deployment)
    app = app_container(deployment)
    hook = app["lifecycle"]["preStop"]
    inits = pod.get("initContainers", [])
    names = [c["name"] for c in pod["containers"]]
    if mode in ("baked-in", "init-copy"):
        assert hook["exec"]["command"][:2] == ["/opt/prestop/prestop", "drain"]
        assert names == ["orders"]
    else:
        assert set(hook) == {"httpGet"}
        assert (hook["httpGet"]["path"], hook["httpGet"]["port"]) == ("/prestop", 9901)
    if mode == "baked-in":
        assert inits == []
    elif mode == "init-copy":
        (init,) = inits
        assert init["image"] == "registry.example.com/prestop-agent:0.1.0"
        assert init["args"] == ["install", "/opt/prestop"]
        mount = {m["name"]: m for m in app["volumeMounts"]}["prestop"]
        assert (mount["mountPath"], mount["readOnly"]) == ("/opt/prestop", True)
        assert {v["name"]: v for v in pod["volumes"]}["prestop"]["emptyDir"]
    elif mode == "sidecar":
        assert inits == []
        assert names == ["orders", "prestop"]
    else:
        (init,) = inits
        assert (init["name"], init["restartPolicy"]) == ("prestop", "Always")
        assert names == ["orders"]
    for container in _serve_sidecars(deployment):
        assert container[0]["image"] == "registry.example.com/prestop-agent-sidecar:0.1.0"


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_registry_env(helm: Path, mode: str, registry: str) -> None:
    """The app and the agent read the same registry settings; credentials come from Secrets."""
    deployment = by_kind(documents(_rendered(helm, mode, registry)))["Deployment"]
    pod = pod_spec(deployment)
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        if container["name"] == "install-prestop":
            continue
        env = {v["name"]: v for v in container["env"]}
        if registry == "nacos":
            assert env["NACOS_SERVER_ADDR"]["value"] == "nacos-headless.infra:8848"
            assert env["NACOS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "nacos-credentials"
            assert not any(name.startswith("EUREKA") for name in env)
        else:
            ref = env["EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "eureka-service-url", "key": "defaultZone"}
            assert not any(name.startswith("NACOS") for name in env)


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_agent_command_lines_are_accepted_by_the_cli(
    helm: Path, mode: str, registry: str, tmp_path: Path
) -> None:
    """The exec hook runs as `drain --dry-run`; the sidecar's args and env load as `serve` would."""
    deployment = by_kind(documents(_rendered(helm, mode, registry)))["Deployment"]
    runs = 0
    for container, argv in _exec_prestops(deployment):
        args = [*_subcommand_args(argv, "drain"), "--dry-run"]
        result = CliRunner().invoke(cli, ["drain", *args], env=_pod_env(container))
        assert result.exit_code == 0, result.output
        runs += 1
    for container, argv in _serve_sidecars(deployment):
        ctx = cli.commands["serve"].make_context("serve", _subcommand_args(argv, "serve"))
        env = _pod_env(container)
        assert env["PRESTOP_STATE_DIR"] == "/run/prestop"
        env["PRESTOP_STATE_DIR"] = str(tmp_path)  # the pod's emptyDir, here
        cfg = config.load(ctx.params, env)
        side = config.load_sidecar(ctx.params, env, cfg)
        assert side.token == FAKE_SECRET
        assert cfg.grace == pod_spec(deployment)["terminationGracePeriodSeconds"]
        runs += 1
    assert runs == 1


EXTRAS = (
    "--set-json",
    'app.env=[{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx512m"}]',
    "--set-json",
    'agent.env=[{"name": "PRESTOP_CONSUMER_STALENESS", "value": "20"}]',
    "--set-json",
    'agent.args=["--log-level", "debug"]',
    "--set-json",
    'app.volumeMounts=[{"name": "config", "mountPath": "/config"}]',
    "--set-json",
    'app.volumes=[{"name": "config", "configMap": {"name": "orders-config"}}]',
    "--set",
    "registry.nacos.namespace=prod,registry.nacos.group=SHOP,registry.nacos.credentialsSecret=",
)


@pytest.mark.parametrize("mode", MODES)
def test_optional_values_render_valid_and_reach_the_agent(
    helm: Path, mode: str, yamllint_config: YamlLintConfig
) -> None:
    """Extra env, args, volumes and Nacos settings land where they belong, still valid."""
    text = template(helm, "--set", f"mode={mode}", *EXTRAS)
    assert list(linter.run(text, yamllint_config)) == []
    docs = documents(text)
    for doc in docs:
        kubernetes_validate.validate(doc, NEWEST, strict=True)
    deployment = by_kind(docs)["Deployment"]
    app = app_container(deployment)
    assert env_value(app, "JAVA_TOOL_OPTIONS") == "-Xmx512m"
    assert {"name": "config", "mountPath": "/config"} in app["volumeMounts"]
    ((container, argv),) = _exec_prestops(deployment) + _serve_sidecars(deployment)
    assert argv[-2:] == ["--log-level", "debug"]
    env = _pod_env(container)
    assert env["PRESTOP_CONSUMER_STALENESS"] == "20"
    assert env["SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE"] == "prod"
    assert env["SPRING_CLOUD_NACOS_DISCOVERY_GROUP"] == "SHOP"
    assert "NACOS_PASSWORD" not in env  # no credentialsSecret: no auth
    cfg = config.load({}, env)
    assert cfg.consumer_staleness == 20.0
    assert isinstance(cfg.target, NacosSettings)
    assert (cfg.target.namespace, cfg.target.group) == ("prod", "SHOP")


# ---------------------------------------------------------------------------------------------
# budget and grace period


def _budget_and_grace(docs: list[dict[str, Any]]) -> tuple[float, int]:
    deployment = by_kind(docs)["Deployment"]
    grace: int = pod_spec(deployment)["terminationGracePeriodSeconds"]
    ((container, argv),) = _exec_prestops(deployment) + _serve_sidecars(deployment)
    flag = float(argv[argv.index("--budget") + 1])
    assert float(env_value(container, "PRESTOP_BUDGET")) == flag
    assert int(env_value(container, "PRESTOP_GRACE")) == grace
    return flag, grace


@pytest.mark.parametrize(("mode", "registry"), COMBOS, ids=COMBO_IDS)
def test_default_budget_passes_the_check_arithmetic(helm: Path, mode: str, registry: str) -> None:
    """The default budget per registry is what `prestop check` asks for; grace = budget + 5 s."""
    budget, grace = _budget_and_grace(documents(_rendered(helm, mode, registry)))
    needs = GraceNeeds(staleness=DEFAULT_STALENESS[registry], quiet=6.9, shutdown=5.0)
    # Nacos: 49.4 s -> 50; Eureka: 108.9 s -> 110, the round number the docs have always used.
    assert needs.budget <= budget <= needs.suggested_budget + 1
    assert grace == math.ceil(budget + GRACE_MARGIN)
    max_wait = 105 if registry == "eureka" else 60
    findings = grace_findings(needs, budget=budget, max_wait=max_wait, grace=grace)
    assert exit_code(findings) == 0, [f.line() for f in findings]


@pytest.mark.parametrize(("budget", "grace"), [("80", 85), ("62.5", 68)])
def test_grace_follows_the_budget(helm: Path, budget: str, grace: int) -> None:
    docs = documents(template(helm, "--set", f"agent.budget={budget}", "--set", "mode=sidecar"))
    assert _budget_and_grace(docs) == (float(budget), grace)


def test_a_longer_grace_period_is_kept(helm: Path) -> None:
    docs = documents(template(helm, "--set", "agent.terminationGracePeriodSeconds=90"))
    assert _budget_and_grace(docs) == (50.0, 90)


def test_a_grace_period_shorter_than_the_budget_fails(helm: Path) -> None:
    """Kubelet would kill the hook mid-drain: the rendering fails and names the value to use."""
    result = run_helm(
        helm, "template", "orders", str(CHART), "--set", "agent.terminationGracePeriodSeconds=54"
    )
    error = helm_error(result)
    assert "agent.terminationGracePeriodSeconds 54 is shorter than agent.budget 50 + 5 s" in error
    assert "at least 55" in error


def test_a_budget_below_the_agents_minimum_fails(helm: Path) -> None:
    """`drain` and `serve` refuse a budget under 10.75 s with the default timeouts."""
    for setting in ("--set", "agent.budget=5"), ("--set-json", "agent.budget=10.4"):
        error = helm_error(run_helm(helm, "template", "orders", str(CHART), *setting))
        assert "agent.budget" in error
        assert "below 10.75 s" in error


# ---------------------------------------------------------------------------------------------
# the sidecar token


def _token_pair(docs: list[dict[str, Any]]) -> tuple[str, str]:
    """(the hook's X-Prestop-Token header, the token in the Secret the sidecar reads)."""
    kinds = by_kind(docs)
    deployment = kinds["Deployment"]
    headers = app_container(deployment)["lifecycle"]["preStop"]["httpGet"]["httpHeaders"]
    (header,) = [h["value"] for h in headers if h["name"] == "X-Prestop-Token"]
    ((sidecar, _),) = _serve_sidecars(deployment)
    ref = {v["name"]: v for v in sidecar["env"]}["PRESTOP_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = kinds["Secret"]
    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "token")
    return header, base64.b64decode(secret["data"]["token"]).decode()


@pytest.mark.parametrize("mode", SIDECAR_MODES)
def test_generated_token_is_the_same_in_hook_and_secret(helm: Path, mode: str) -> None:
    header, secret = _token_pair(documents(_rendered(helm, mode, "nacos")))
    assert header == secret
    assert re.fullmatch(r"[A-Za-z0-9]{32}", header)


def test_token_value_is_used_in_both_places(helm: Path) -> None:
    docs = documents(template(helm, "--set", "token.value=s3cret-Token"))
    assert _token_pair(docs) == ("s3cret-Token", "s3cret-Token")


def test_without_a_cluster_each_rendering_makes_a_new_token(helm: Path) -> None:
    """`helm template` cannot look up the existing Secret: why GitOps renderings set token.value."""
    first, _ = _token_pair(documents(template(helm)))
    second, _ = _token_pair(documents(template(helm)))
    assert first != second


def test_exec_modes_have_no_token(helm: Path) -> None:
    text = _rendered(helm, "init-copy", "nacos")
    assert "PRESTOP_TOKEN" not in text
    assert "X-Prestop-Token" not in text


# ---------------------------------------------------------------------------------------------
# refusals


def test_native_sidecar_on_a_cluster_older_than_1_29_fails(helm: Path) -> None:
    args = ("template", "orders", str(CHART), "--set", "mode=native-sidecar")
    error = helm_error(run_helm(helm, *args, "--kube-version", "1.28.9"))
    assert "mode native-sidecar needs Kubernetes >= 1.29" in error
    assert "use mode sidecar" in error
    assert run_helm(helm, *args, "--kube-version", "1.29.0").returncode == 0


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("mode=exec", "mode"),
        ("registry.type=consul", "type"),
        ("agent.budgte=60", "budgte"),
        ("app.port=0", "port"),
    ],
)
def test_bad_values_fail_naming_the_value(helm: Path, setting: str, named: str) -> None:
    """values.schema.json: a typo or an unknown mode is refused, not silently ignored."""
    error = helm_error(run_helm(helm, "template", "orders", str(CHART), "--set", setting))
    assert named in error


# ---------------------------------------------------------------------------------------------
# examples/ are the chart's renderings


def test_examples_are_current_renderings(helm: Path, tmp_path: Path) -> None:
    """examples/NAME.yaml == deploy/render-examples.sh's rendering of examples/values/NAME.yaml."""
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "render-examples.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": str(helm)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    values = sorted(p.name for p in (EXAMPLES / "values").glob("*.yaml"))
    rendered = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert rendered == values
    assert len(values) == 5
    manifests = sorted(
        p.name for p in EXAMPLES.glob("*.yaml") if p.name not in ("secret.yaml", ".yamllint.yaml")
    )
    assert manifests == values, "every example manifest has a values file, and vice versa"
    for name in values:
        fresh = (tmp_path / name).read_text()
        assert (EXAMPLES / name).read_text() == fresh, (
            f"examples/{name} is stale: run HELM={helm} deploy/render-examples.sh"
        )


@pytest.mark.parametrize("mode", ["sidecar", "native-sidecar"])
def test_startup_hold_reaches_the_sidecar_with_its_state_dir(
    helm: Path, mode: str, tmp_path: Path
) -> None:
    """The hold's switches reach `prestop serve`, and its hold record lives on an emptyDir."""
    text = template(
        helm,
        "--set",
        f"mode={mode},agent.startupHold.enabled=true,agent.startupHold.delay=5",
        "--set",
        "agent.startupHold.readyUrl=http://127.0.0.1:8080/ready",
    )
    docs = documents(text)
    for doc in docs:
        kubernetes_validate.validate(doc, NEWEST, strict=True)
    deployment = by_kind(docs)["Deployment"]
    ((container, _argv),) = _serve_sidecars(deployment)
    env = _pod_env(container)
    assert env["PRESTOP_STARTUP_HOLD"] == "on"
    assert env["PRESTOP_STARTUP_DELAY"] == "5"
    assert env["PRESTOP_READY_URL"] == "http://127.0.0.1:8080/ready"
    assert env["PRESTOP_STATE_DIR"] == "/run/prestop"
    assert {"name": "prestop-state", "mountPath": "/run/prestop"} in container["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert "emptyDir" in volumes["prestop-state"]
    env["PRESTOP_STATE_DIR"] = str(tmp_path)  # the emptyDir, here
    side = config.load_sidecar({}, env, config.load({}, env), require_token=False)
    assert side.startup_hold and side.startup_delay == 5.0
    assert side.ready_url == "http://127.0.0.1:8080/ready"
