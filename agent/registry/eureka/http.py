"""Calls to one Eureka server: JSON, Basic auth, each one bounded by the Deadline.

Always ``Accept: application/json`` (without it the server answers XML). A 401, or a 403 on a
write, is an :class:`~agent.exceptions.AuthError`; a 5xx is transient
(:class:`~agent.exceptions.RegistryUnavailable`) except on a status PUT, whose 500 the caller
retries once itself (docs/eureka.md#status-codes).
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx

from agent.config import EurekaServer
from agent.deadline import Deadline
from agent.exceptions import AuthError, RegistryRejected, RegistryUnavailable, json_of
from agent.httpcall import send


class EurekaHttp:
    """The requests of one app's adapter, to any of its servers."""

    def __init__(self, http: httpx.Client, app: str, *, http_timeout: float = 3.0) -> None:
        self._http = http
        self._app = app
        self._http_timeout = http_timeout

    def headers(self, server: EurekaServer) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if server.username is not None:
            raw = f"{server.username}:{server.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    def call(
        self,
        server: EurekaServer,
        method: str,
        path: str,
        deadline: Deadline,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        response = send(
            self._http,
            method,
            server.base_url + path,
            deadline,
            self._http_timeout,
            RegistryUnavailable,
            what=f"{method} {server}{path}",
            params=params,
            headers=self.headers(server),
        )
        if response.status_code == 401:
            raise AuthError(
                f"{method} {server}{path} -> 401: credentials refused; put user:password@ in "
                "the service URL (EUREKA_CLIENT_SERVICEURL_DEFAULTZONE)"
            )
        if response.status_code == 403 and method != "GET":
            # Spring Security's CSRF protection left on for /eureka/**: reads work, writes 403.
            raise AuthError(
                f"{method} {server}{path} -> 403: writes forbidden (CSRF not disabled for "
                "/eureka/** on the server, or the user may not write)"
            )
        if response.status_code >= 500 and not (method == "PUT" and path.endswith("/status")):
            raise RegistryUnavailable(f"{method} {server}{path} -> HTTP {response.status_code}")
        return response

    def instance_path(self, instance_id: str) -> str:
        return f"apps/{quote(self._app, safe='')}/{quote(instance_id, safe='')}"

    def live(
        self, server: EurekaServer, instance_id: str, deadline: Deadline
    ) -> dict[str, Any] | None:
        """The live (uncached) record: ``GET apps/{APP}/{id}``; None on 404."""
        r = self.call(server, "GET", self.instance_path(instance_id), deadline)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise RegistryRejected(
                f"GET {server}{self.instance_path(instance_id)} -> {r.status_code}"
            )
        try:
            body = json_of(r)
        except ValueError as exc:
            raise RegistryRejected(
                f"GET {server}{self.instance_path(instance_id)}: {exc}"
            ) from None
        instance = body.get("instance") if isinstance(body, dict) else None
        return instance if isinstance(instance, dict) else None

    # --- identity ---
