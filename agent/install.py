"""``prestop install DEST``: copy the standalone binary into a shared volume.

The init-container pattern: the agent image runs ``prestop install /opt/prestop`` into an
``emptyDir`` that the app container mounts, so the app image needs neither Python nor a shell,
and the agent image needs no ``cp``. The binary is a PyInstaller one-folder bundle (an executable
plus ``_internal/``), so the whole folder is copied. Every entry is written under a temporary
name first and then renamed into place, so a restarted init container never leaves a
half-written executable behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from agent.exceptions import ConfigError


def bundle_dir() -> Path | None:
    """The folder of the running one-folder bundle, or None when not running frozen."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(sys.executable).resolve().parent


def install(dest: Path, source: Path | None = None) -> Path:
    """Copy the bundle into ``dest``; return the path of the installed executable."""
    source = source or bundle_dir()
    if source is None:
        raise ConfigError(
            "install: only the standalone binary can install itself; "
            "build it with container/build-binary.sh, or pip install prestop-agent in the image"
        )
    executable = Path(sys.executable).name if getattr(sys, "frozen", False) else "prestop"
    if not (source / executable).is_file():
        raise ConfigError(f"install: {source / executable} not found; is this a one-folder build?")
    if not dest.is_dir():
        raise ConfigError(
            f"install: DEST {str(dest)!r} is not a directory; mount an emptyDir there"
        )
    # Entries other than the executable first, so the executable only appears once its
    # libraries are complete.
    entries = sorted(source.iterdir(), key=lambda p: p.name == executable)
    for entry in entries:
        staging = dest / f".{entry.name}.installing"
        _remove(staging)
        if entry.is_dir():
            shutil.copytree(entry, staging, symlinks=True)
        else:
            shutil.copy2(entry, staging)
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink():
            old = dest / f".{entry.name}.old"
            _remove(old)
            os.replace(target, old)
            os.replace(staging, target)
            _remove(old)
        else:
            os.replace(staging, target)
    return dest / executable


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
