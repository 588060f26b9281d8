"""The Eureka adapter: take the instance ``OUT_OF_SERVICE`` on every server, confirm, cancel.

The steps and why are in the package's docstring (:mod:`agent.registry.eureka`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from agent.addresses import same_ip
from agent.config import EurekaServer, EurekaSettings
from agent.deadline import Deadline
from agent.exceptions import (
    AgentError,
    DeadlineExceeded,
    InstanceNotFound,
    RegistryError,
    RegistryRejected,
    RegistryUnavailable,
    json_of,
)
from agent.logs import get_logger
from agent.registry import InstanceState, TakeOut
from agent.registry.eureka.answers import (
    OUT_OF_SERVICE,
    UP,
    back_up,
    instance_state,
    instances_in,
    last_entry,
    overridden,
    port_of,
)
from agent.registry.eureka.http import EurekaHttp

log = get_logger()

# What ends the work on one server while the others may still do: a registry error, or no time
# left to ask it (the servers already done stay done).
SERVER_FAILED: tuple[type[AgentError], ...] = (RegistryError, DeadlineExceeded)


class EurekaRegistry:
    """One instance of one app, on every configured Eureka server."""

    name = "eureka"
    cleans_up_after_stop = True

    def __init__(
        self,
        settings: EurekaSettings,
        http: httpx.Client,
        *,
        http_timeout: float = 3.0,
    ) -> None:
        self._s = settings
        self._api = EurekaHttp(http, settings.app, http_timeout=http_timeout)
        self._id: str | None = None
        self._accepted: list[EurekaServer] = []  # servers that took the instance out
        # Server -> the status our last write there aimed at, when its answer was lost: finding
        # the instance in that status later is our own doing, not "already".
        self._unanswered: dict[str, str] = {}

    # --- identity ---

    def _candidates(self, server: EurekaServer, deadline: Deadline) -> list[str]:
        s = self._s
        if s.instance_id:
            return [s.instance_id]
        found: list[str] = []
        r = self._api.call(server, "GET", f"apps/{quote(s.app, safe='')}", deadline)
        if r.status_code == 200:
            try:
                body = json_of(r)
            except ValueError:
                body = None
            for inst in instances_in(body):
                if same_ip(inst.get("ipAddr"), s.ip) and port_of(inst.get("port")) == s.port:
                    instance_id = inst.get("instanceId") or inst.get("hostName")
                    if instance_id:
                        found.append(str(instance_id))
        if s.hostname:
            # apps/{APP} is cached (~30 s): a young pod may be missing there. Spring Cloud's
            # default id is hostname:spring.application.name:port (IdUtils).
            found.append(f"{s.hostname}:{s.app_name}:{s.port}")
        return list(dict.fromkeys(found))

    def resolve_id(self, deadline: Deadline) -> str:
        """Our instance id, confirmed with a live GET on some server; never guessed."""
        if self._id is not None:
            return self._id
        errors: list[AgentError] = []
        for server in self._s.servers:
            try:
                for candidate in self._candidates(server, deadline):
                    instance = self._api.live(server, candidate, deadline)
                    if instance is not None and self._is_us(instance, candidate):
                        self._id = candidate
                        log.info("eureka_instance_found", instance_id=candidate, server=str(server))
                        return candidate
            except SERVER_FAILED as exc:
                errors.append(exc)
        if errors and len(errors) == len(self._s.servers):
            raise errors[0]
        raise InstanceNotFound(
            f"{self.describe_instance()} is not registered on any Eureka server; nothing was "
            "written (set --instance-id / EUREKA_INSTANCE_INSTANCE_ID if the id is custom)"
        )

    def _is_us(self, instance: dict[str, Any], candidate: str) -> bool:
        if self._s.instance_id:
            return True  # configured explicitly: the id is the identity
        return same_ip(instance.get("ipAddr"), self._s.ip) and port_of(instance.get("port")) == (
            self._s.port
        )

    # --- Registry protocol ---

    def describe_instance(self) -> str:
        return f"{self._s.instance} of app {self._s.app}"

    def connect(self, deadline: Deadline) -> str:
        results: list[str] = []
        errors: list[AgentError] = []
        for server in self._s.servers:
            try:
                r = self._api.call(server, "GET", f"apps/{quote(self._s.app, safe='')}", deadline)
                if r.status_code in (200, 404):
                    results.append(f"{server} ok")
                else:
                    results.append(f"{server} HTTP {r.status_code}")
            except SERVER_FAILED as exc:
                errors.append(exc)
                results.append(f"{server} {type(exc).__name__}")
        if len(errors) == len(self._s.servers):
            raise errors[0]
        return f"Eureka: {'; '.join(results)}"

    def get_instance(self, deadline: Deadline) -> InstanceState | None:
        try:
            instance_id = self.resolve_id(deadline)
        except InstanceNotFound:
            return None
        for server in self._s.servers:
            try:
                instance = self._api.live(server, instance_id, deadline)
            except SERVER_FAILED:
                continue
            if instance is not None:
                return instance_state(instance, self._s.ip, self._s.port)
        return None

    def take_out(self, deadline: Deadline) -> TakeOut:
        """``PUT .../status?value=OUT_OF_SERVICE`` on every server, verified on each.

        A PUT whose answer was lost (timeout, dropped connection) may still have landed: the
        read-back that verifies every write decides, and such a server counts as unconfirmed.
        """
        instance_id = self.resolve_id(deadline)
        path = self._api.instance_path(instance_id) + "/status"
        before: InstanceState | None = None
        accepted: list[EurekaServer] = []
        unconfirmed: list[str] = []
        failures: list[str] = []
        already = True
        for server in self._s.servers:
            try:
                current = self._api.live(server, instance_id, deadline)
                if current is None:
                    # Not (yet) on this server: writing there would 404 anyway.
                    failures.append(f"{server}: not registered there")
                    continue
                before = before or instance_state(current, self._s.ip, self._s.port)
                # Out because of our own earlier write whose answer was lost is not "already".
                already = (
                    already
                    and str(current.get("status")) == OUT_OF_SERVICE
                    and self._unanswered.get(str(server)) != OUT_OF_SERVICE
                )
                lost: RegistryUnavailable | None = None
                try:
                    self._put_status(server, path, deadline)
                except RegistryUnavailable as exc:
                    lost = exc
                    self._unanswered[str(server)] = OUT_OF_SERVICE
                else:
                    self._unanswered.pop(str(server), None)
                try:
                    after = self._api.live(server, instance_id, deadline)
                except SERVER_FAILED as exc:
                    if lost is not None:
                        raise lost from None
                    # The PUT was answered 200, so the server applied it; only the check is lost.
                    log.warning("eureka_read_back_failed", server=str(server), error=str(exc))
                    accepted.append(server)
                    continue
                if after is None or str(after.get("status")) != OUT_OF_SERVICE:
                    failures.append(
                        f"{server}: {lost}"
                        if lost is not None
                        else f"{server}: status not OUT_OF_SERVICE after the write"
                    )
                    continue
                if lost is not None:
                    unconfirmed.append(str(server))
                    log.warning("eureka_write_unconfirmed", server=str(server), error=str(lost))
                if overridden(after) != OUT_OF_SERVICE:
                    # A DOWN/STARTING registration wins over the override (rule 1): still out.
                    log.info(
                        "eureka_override_not_shown", server=str(server), status=after.get("status")
                    )
                accepted.append(server)
            except SERVER_FAILED as exc:
                failures.append(f"{server}: {exc}")
                log.warning("eureka_server_failed", server=str(server), error=str(exc))
        if not accepted:
            raise RegistryUnavailable(
                "no Eureka server took the instance out: " + "; ".join(failures)
            )
        self._accepted = accepted
        if failures:
            log.warning("eureka_partial_take_out", accepted=len(accepted), failures=failures)
        assert before is not None
        return TakeOut(
            before=before,
            after=None,
            server_version="eureka",
            method=f"PUT {path}?value={OUT_OF_SERVICE} on "
            f"{len(accepted)}/{len(self._s.servers)} servers",
            already_out=already,
            write_unconfirmed=bool(unconfirmed),
        )

    def _put_status(self, server: EurekaServer, path: str, deadline: Deadline) -> None:
        for attempt in (1, 2):
            # Exact upper-case value, no lastDirtyTimestamp.
            # See docs/eureka.md#taking-the-instance-out.
            r = self._api.call(server, "PUT", path, deadline, params={"value": OUT_OF_SERVICE})
            if r.status_code == 200:
                return
            if r.status_code == 404:
                raise InstanceNotFound(f"PUT {server}{path} -> 404: the lease is gone")
            if r.status_code >= 500 and attempt == 1:
                # 500 is a bad value or a race inside the server: once more.
                # See docs/eureka.md#status-codes.
                continue
            raise RegistryRejected(f"PUT {server}{path} -> HTTP {r.status_code}")

    def visible_to_consumers(self, deadline: Deadline) -> bool:
        """True until ``apps/delta`` on every server that took us out shows us not UP.

        Consumers fetch ``apps/delta`` (JSON) every 30 s through the server's read-only cache,
        so this is when the change becomes fetchable; their own caches add to it.
        """
        instance_id = self.resolve_id(deadline)
        servers = self._accepted or list(self._s.servers)
        for server in servers:
            r = self._api.call(server, "GET", "apps/delta", deadline)
            delta = r.status_code == 200
            if not delta:
                # eureka.server.disable-delta answers 403: consumers then fetch the full
                # registry; apps/{APP} goes through the same read-only cache.
                r = self._api.call(server, "GET", f"apps/{quote(self._s.app, safe='')}", deadline)
                if r.status_code == 404:
                    continue  # no instance of the app is listed at all
                if r.status_code != 200:
                    return True
            try:
                body = json_of(r)
            except ValueError:
                return True
            last = last_entry(body, self._s.app, instance_id)
            if (last is None and delta) or (last is not None and last.get("status") == UP):
                return True
        return False

    def serving(self, deadline: Deadline) -> bool:
        """Readiness: consumers can fetch the instance as UP from every server.

        A fresh registration reaches consumers through apps/delta (for 3 minutes) and the full
        registry; both go through the read-only cache, so this turns true at a cache tick.
        """
        instance_id = self.resolve_id(deadline)
        for server in self._s.servers:
            seen_up = False
            for path in ("apps/delta", f"apps/{quote(self._s.app, safe='')}"):
                r = self._api.call(server, "GET", path, deadline)
                if r.status_code != 200:
                    continue
                try:
                    body = json_of(r)
                except ValueError:
                    continue
                last = last_entry(body, self._s.app, instance_id)
                if last is not None:
                    seen_up = last.get("status") == UP
                    break
            if not seen_up:
                return False
        return True

    def put_back(self, deadline: Deadline) -> TakeOut:
        """Remove our override so the instance is UP again, never leaving it UNKNOWN.

        ``DELETE .../status?value=UP`` drops the override and sets UP at once; without a
        value the status would be UNKNOWN until the next heartbeat. When the status is
        OUT_OF_SERVICE with no override (rule 3 keeps it), a PUT UP creates one to delete.
        See docs/eureka.md#putting-the-instance-back.
        """
        instance_id = self.resolve_id(deadline)
        path = self._api.instance_path(instance_id) + "/status"
        done: list[str] = []
        unconfirmed: list[str] = []
        already = True
        before: InstanceState | None = None
        for server in self._s.servers:
            try:
                current = self._api.live(server, instance_id, deadline)
                if current is None:
                    continue
                before = before or instance_state(current, self._s.ip, self._s.port)
                already = already and back_up(current) and self._unanswered.get(str(server)) != UP
                try:
                    if overridden(current) is None and str(current.get("status")) == OUT_OF_SERVICE:
                        self._api.call(server, "PUT", path, deadline, params={"value": UP})
                    r = self._api.call(server, "DELETE", path, deadline, params={"value": UP})
                except RegistryUnavailable as lost:
                    # The answer was lost, maybe not the write: the live record decides.
                    self._unanswered[str(server)] = UP
                    after = self._api.live(server, instance_id, deadline)
                    if after is None or not back_up(after):
                        log.warning("eureka_write_lost", server=str(server), error=str(lost))
                        continue
                    log.warning("eureka_write_unconfirmed", server=str(server), error=str(lost))
                    unconfirmed.append(str(server))
                    done.append(str(server))
                    continue
                self._unanswered.pop(str(server), None)
                if r.status_code == 200:
                    done.append(str(server))
            except SERVER_FAILED as exc:
                log.warning("eureka_server_failed", server=str(server), error=str(exc))
        if not done or before is None:
            raise RegistryUnavailable("no Eureka server put the instance back")
        return TakeOut(
            before=before,
            after=None,
            server_version="eureka",
            method=f"DELETE {path}?value=UP on {len(done)}/{len(self._s.servers)} servers",
            already_out=already,
            write_unconfirmed=bool(unconfirmed),
        )

    def after_stop(self, deadline: Deadline) -> str | None:
        """Cancel the lease on every server once the app has stopped (200 and 404 both fine).

        Removes a racing DOWN re-registration and the override, so a successor with the same
        id does not start OUT_OF_SERVICE (NE v2.0.6 AbstractInstanceRegistry.internalCancel).
        """
        if self._id is None:
            return None
        path = self._api.instance_path(self._id)
        results = []
        for server in self._s.servers:
            try:
                r = self._api.call(server, "DELETE", path, deadline)
                results.append(
                    f"{server}: {'cancelled' if r.status_code == 200 else r.status_code}"
                )
            except SERVER_FAILED as exc:
                results.append(f"{server}: {type(exc).__name__}")
        return "; ".join(results)

    def status(self, deadline: Deadline) -> dict[str, Any]:
        out: dict[str, Any] = {"registry": self.name, "app": self._s.app, "servers": {}}
        try:
            instance_id = self.resolve_id(deadline)
        except InstanceNotFound:
            out["registered"] = False
            return out
        out["instance_id"] = instance_id
        out["registered"] = True
        for server in self._s.servers:
            try:
                instance = self._api.live(server, instance_id, deadline)
            except SERVER_FAILED as exc:
                out["servers"][str(server)] = {"error": str(exc)}
                continue
            out["servers"][str(server)] = (
                None
                if instance is None
                else {"status": instance.get("status"), "overriddenStatus": overridden(instance)}
            )
        out["consumer_visible"] = self.visible_to_consumers(deadline)
        return out
