"""Requests to a Nacos cluster: fail-over across addresses, login and token, version detection.

The token goes in headers (never in URLs, which end up in access logs). Every call is one
:func:`agent.httpcall.send`, bounded by the Deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from agent.config import NacosSettings
from agent.deadline import Clock, Deadline
from agent.exceptions import (
    AuthError,
    RegistryRejected,
    RegistryUnavailable,
    json_of,
)
from agent.httpcall import send
from agent.logs import get_logger
from agent.registry.nacos.answers import major_of, snippet

log = get_logger()

# Statuses after which another server of the cluster may do better (gateway/proxy or a node
# that is starting: "server is DOWNnow", N 2.5.1:naming/.../naming/web/TrafficReviseFilter.java).
_FAILOVER_STATUSES = frozenset({502, 503, 504})
_TOKEN_REFRESH_MARGIN = 0.9  # log in again after 90 % of tokenTtl


@dataclass(frozen=True)
class ServerInfo:
    version: str
    major: int  # 1, 2 or 3


class NacosHttp:
    """Requests to a Nacos cluster: fail-over across addresses, token handling, bounded timeouts."""

    def __init__(
        self,
        settings: NacosSettings,
        http: httpx.Client,
        clock: Clock,
        *,
        http_timeout: float = 3.0,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._http_timeout = http_timeout
        self._current = 0
        self._token: str | None = None
        self._token_expires = 0.0
        self.server: ServerInfo | None = None

    # --- transport ---

    def _send(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, trying each server once, starting with the last one that answered."""
        servers = self._settings.servers
        errors: list[str] = []
        for offset in range(len(servers)):
            # Named by the call, not the server, when the time is gone before we ask it.
            deadline.left_for(f"{method} {path}")
            index = (self._current + offset) % len(servers)
            try:
                response = send(
                    self._http,
                    method,
                    servers[index].base_url + path,
                    deadline,
                    self._http_timeout,
                    RegistryUnavailable,
                    what=str(servers[index]),
                    params=params,
                    data=data,
                    headers=headers,
                )
            except RegistryUnavailable as exc:
                errors.append(str(exc))
                continue
            if response.status_code in _FAILOVER_STATUSES:
                errors.append(f"{servers[index]}: HTTP {response.status_code}")
                continue
            self._current = index
            return response
        raise RegistryUnavailable(
            f"{method} {path} failed on every server ({'; '.join(errors)})",
            protocol_errors_only=bool(errors) and all("RemoteProtocolError" in e for e in errors),
        )

    def request(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """An authenticated request; logs in again once when the token is refused."""
        self.ensure_token(deadline)
        response = self._send(method, path, deadline, params=params, headers=self._auth_headers())
        if response.status_code == 403 and self._has_credentials():
            # Expired or invalid token (e.g. the server's secret rotated): one fresh login.
            log.info("registry_relogin", reason=snippet(response))
            self._token = None
            self.ensure_token(deadline)
            response = self._send(
                method, path, deadline, params=params, headers=self._auth_headers()
            )
        if response.status_code == 403:
            hint = "" if self._has_credentials() else "; set --username and --password-file"
            raise AuthError(f"{method} {path} refused: {snippet(response)}{hint}")
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"{method} {path} -> HTTP {response.status_code}: {snippet(response)}"
            )
        return response

    # --- auth ---

    def _has_credentials(self) -> bool:
        return self._settings.username is not None and self._settings.password is not None

    def _auth_headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        # Authorization: Bearer is read by 1.x, 2.x and 3.x; the accessToken header by 2.x/3.x
        # (N 2.5.1:auth/.../context/HttpIdentityContextBuilder.java, 1.4.8 NacosAuthManager).
        return {"Authorization": f"Bearer {self._token}", "accessToken": self._token}

    def ensure_token(self, deadline: Deadline) -> None:
        if not self._has_credentials():
            return
        if self._token is not None and self._clock.now() < self._token_expires:
            return
        self._login(deadline)

    def _login(self, deadline: Deadline) -> None:
        server = self.detect(deadline)
        paths = ["/v1/auth/users/login"]
        if server.major >= 3:
            # 3.x Java SDK tries v3 first and falls back to v1 on 404/501 (HttpLoginProcessor).
            paths.insert(0, "/v3/auth/user/login")
        form = {"username": self._settings.username, "password": self._settings.password}
        user = self._settings.username
        refused = (
            f"login refused for user {user!r}: {{}}; "
            "check --username and the password (NACOS_PASSWORD / --password-file)"
        )
        response: httpx.Response | None = None
        for path in paths:
            try:
                response = self._send("POST", path, deadline, data=form)
            except RegistryUnavailable as exc:
                # The server answered the version query a moment ago. Nacos 2.3 answers a wrong
                # password with a broken status line (``HTTP/1.1 0``, no body), seen on the real
                # server; retrying that until the budget is gone would only hide the cause.
                if exc.protocol_errors_only:
                    raise AuthError(refused.format("the server broke the answer off")) from None
                raise
            if response.status_code not in (404, 405, 410, 501):
                break
        assert response is not None
        if response.status_code == 200:
            try:
                body = json_of(response)
                token = str(body["accessToken"])
                ttl = float(body.get("tokenTtl", 18000))
            except (ValueError, KeyError, TypeError, OverflowError):
                raise RegistryRejected(
                    f"login answered 200 without a token: {snippet(response)}"
                ) from None
            self._token = token
            if not math.isfinite(ttl):
                ttl = 18000.0
            self._token_expires = self._clock.now() + ttl * _TOKEN_REFRESH_MARGIN
            log.info("registry_login", username=user, token_ttl=ttl)
            return
        if response.status_code in (401, 403) or (
            response.status_code == 500
            and (server.major >= 3 or "not found" in response.text.lower())
        ):
            # 2.x/3.x answer an unknown user with 500 "caused: User x not found;" (#15682), and
            # the real 3.1 server a wrong password with a bare 500 ("No message available") on
            # both login paths: on 3.x a 500 from the login is a refusal, not an outage.
            raise AuthError(refused.format(snippet(response)))
        if response.status_code >= 500:
            raise RegistryUnavailable(f"login -> HTTP {response.status_code}: {snippet(response)}")
        raise RegistryRejected(f"login -> HTTP {response.status_code}: {snippet(response)}")

    # --- version ---

    def detect(self, deadline: Deadline) -> ServerInfo:
        """The server's version: ``/v3/admin/core/state``, else ``/v1/console/server/state``."""
        if self.server is not None:
            return self.server
        response = self._send("GET", "/v3/admin/core/state", deadline)
        if response.status_code == 200:
            try:
                data = json_of(response).get("data") or {}
                version = str(data.get("version") or "3")
            except (ValueError, AttributeError):
                version = "3"
            self.server = ServerInfo(version, major_of(version) or 3)
        else:
            response = self._send("GET", "/v1/console/server/state", deadline)
            version = ""
            if response.status_code == 200:
                try:
                    version = str(json_of(response).get("version") or "")
                except (ValueError, AttributeError):
                    version = ""
            if response.status_code >= 500:
                raise RegistryUnavailable(f"server state -> HTTP {response.status_code}")
            major = major_of(version) if version else None
            if major is None:
                # Neither endpoint said: assume 2.x, the most widespread, and say so.
                log.warning("registry_version_unknown", assumed="2.x")
                version, major = version or "unknown", 2
            self.server = ServerInfo(version, major)
        log.info("registry_version_detected", version=self.server.version, major=self.server.major)
        return self.server
