"""The Java lab's jars (lab/java, built by ``lab/java/build.sh``) and how to start them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

JAVA_DIR = Path(os.environ.get("PRESTOP_LAB_JAVA") or Path(__file__).resolve().parents[1] / "java")
MODULES = ("nacos-2x", "nacos-3x", "eureka-server", "provider", "consumer")


class JavaLabMissing(RuntimeError):
    """A part of the real stack is not built here; the message says why and what to run."""


def jar(module: str) -> Path:
    """The module's runnable jar, or JavaLabMissing naming the reason and the fix."""
    if shutil.which("java") is None:
        raise JavaLabMissing("the real stack needs java (a JDK 17) on PATH")
    path = JAVA_DIR / module / "target" / f"{module}.jar"
    if not path.is_file():
        raise JavaLabMissing(f"{path} is not built: run lab/java/build.sh")
    return path


def java_argv(
    module: str,
    *args: str,
    heap_mb: int = 192,
    sysprops: dict[str, str] | None = None,
) -> list[str]:
    """``java`` with a small heap and a fast start, then the module's jar and its arguments.

    Serial GC and a bounded metaspace keep several JVMs within a 2-core, few-GB test machine;
    the JIT is left at its defaults so cold-start latency stays realistic.
    """
    props = [f"-D{k}={v}" for k, v in (sysprops or {}).items()]
    return [
        "java",
        f"-Xmx{heap_mb}m",
        "-Xss512k",
        "-XX:+UseSerialGC",
        "-XX:MaxMetaspaceSize=192m",
        "-Djava.security.egd=file:/dev/./urandom",
        *props,
        "-jar",
        str(jar(module)),
        *args,
    ]
