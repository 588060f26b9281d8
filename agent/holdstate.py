"""Who took this pod's instance out of service, and why: a small file that outlives a sidecar.

The registry only says *that* an instance is disabled (Nacos ``enabled=false``, Eureka
``OUT_OF_SERVICE``), never by whom. A sidecar restarted inside the same pod must tell its own
leftovers (a start-up hold, which it should finish) from an operator's ``prestop down`` (which it
must leave alone) and from a drain of this pod (the pod is going away). The record lives in
``--state-dir`` (``PRESTOP_STATE_DIR``), an ``emptyDir`` shared by the sidecar and wherever
``prestop down``/``up`` run: it survives container restarts and dies with the pod, so a new pod
on the same IP starts with no record and repairs a stale disable as before.

One JSON object, written atomically (temporary file, fsync, rename), so a process killed
mid-write leaves the old record or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from agent.logs import get_logger

log = get_logger()

Holder = Literal["startup", "operator", "drain"]
HOLDERS: tuple[Holder, ...] = ("startup", "operator", "drain")
FILE_NAME = "prestop-hold.json"


def this_pod() -> str:
    """The pod's name (Kubernetes sets HOSTNAME to it), to tell this pod's record from others'."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


@dataclass(frozen=True)
class Hold:
    holder: Holder
    instance: str  # ip:port the record is about
    pod: str
    since: float  # wall clock (epoch seconds): it must make sense across processes
    reason: str = ""


class HoldFile:
    """The hold record of one instance in one directory; ``directory=None``: nothing kept."""

    def __init__(self, directory: Path | None, instance: str, pod: str | None = None) -> None:
        self.directory = directory
        self.instance = instance
        self.pod = pod or this_pod()

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / FILE_NAME

    def read(self) -> Hold | None:
        """The record for our instance; None when there is none (or it is unreadable)."""
        path = self.path
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # Unreadable means unknown: treated as no record, so a hold is never kept forever
            # because of a damaged file.
            log.warning("hold_state_unreadable", path=str(path), error=type(exc).__name__)
            return None
        if not isinstance(data, dict) or data.get("holder") not in HOLDERS:
            log.warning("hold_state_unreadable", path=str(path), error="bad_content")
            return None
        if data.get("instance") != self.instance:
            return None  # another instance's record (the pod's port changed): not ours
        try:
            return Hold(
                holder=data["holder"],
                instance=str(data["instance"]),
                pod=str(data.get("pod", "")),
                since=float(data.get("since", 0.0)),
                reason=str(data.get("reason", "")),
            )
        except (TypeError, ValueError):
            log.warning("hold_state_unreadable", path=str(path), error="bad_content")
            return None

    def write(self, holder: Holder, reason: str = "") -> Hold:
        hold = Hold(holder, self.instance, self.pod, round(time.time(), 3), reason)
        path = self.path
        if path is None:
            return hold
        fd, tmp = tempfile.mkstemp(prefix=".prestop-hold-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(asdict(hold), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        log.info("hold_state_written", holder=holder, reason=reason, path=str(path))
        return hold

    def clear(self) -> None:
        path = self.path
        if path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("hold_state_cleared", path=str(path))
