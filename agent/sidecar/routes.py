"""The sidecar's HTTP face: /prestop, /readyz, /healthz, /metrics, and serving until SIGTERM."""

from __future__ import annotations

import json
import threading
from typing import Any

from agent.httpserver import BoundedHTTPServer, Limits, Request, Response, Route
from agent.logs import get_logger
from agent.sequence import Outcome
from agent.sidecar.core import Sidecar
from agent.sidecar.state import SidecarState

log = get_logger()

TOKEN_HEADER = "X-Prestop-Token"  # noqa: S105 - a header name, not a secret


def metrics_text(state: SidecarState, outcome: Outcome | None) -> str:
    """The sidecar's gauges and, once a run finished, what it did (Prometheus text)."""
    lines = [
        "# TYPE prestop_draining gauge",
        f"prestop_draining {int(state.draining.is_set())}",
        "# TYPE prestop_warmup_progress gauge",
        f"prestop_warmup_progress {state.warmup_progress:.3f}",
        "# TYPE prestop_startup_hold gauge",
        f"prestop_startup_hold {int(state.holding)}",
        "# TYPE prestop_stale_disabled_repaired gauge",
        f"prestop_stale_disabled_repaired {int(state.repaired)}",
    ]
    if outcome is not None:
        lines.append("# TYPE prestop_phase_duration_seconds gauge")
        for phase in outcome.phases:
            lines.append(
                f'prestop_phase_duration_seconds{{phase="{phase.name}",'
                f'outcome="{phase.outcome}"}} {phase.duration:.3f}'
            )
        confirm, drain = outcome.phase("confirm"), outcome.phase("drain")
        if confirm is not None and "time_to_invisible_s" in confirm.detail:
            lines.append(
                f"prestop_time_to_invisible_seconds {confirm.detail['time_to_invisible_s']}"
            )
        if drain is not None:
            lines.append(
                f"prestop_requests_after_take_out {drain.detail.get('requests_after_take_out', 0)}"
            )
        label = "degraded" if outcome.degraded else "ok"
        lines.append(f'prestop_last_outcome{{outcome="{label}"}} 1')
    return "\n".join(lines) + "\n"


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode())


def make_server(
    sidecar: Sidecar, host: str, port: int, limits: Limits | None = None
) -> BoundedHTTPServer:
    """The sidecar's HTTP server: route and token come from the request head, no body is read.

    /healthz and /metrics are answered by the server's loop, /readyz by a small pool and an
    authorised /prestop by its own threads, so neither idle nor slow nor unauthenticated clients
    can hold what the hook call needs (see :mod:`agent.httpserver` for the limits).
    """
    server: BoundedHTTPServer

    def healthz(_: Request) -> Response:
        return _json(200, {"status": "alive"})

    def readyz(_: Request) -> Response:
        ready, reasons = sidecar.readiness()
        return _json(200 if ready else 503, {"ready": ready, "reasons": reasons})

    def metrics(_: Request) -> Response:
        lines = ["# TYPE prestop_http_refused_total counter"]
        for reason, count in sorted(server.refused_totals().items()):
            lines.append(f'prestop_http_refused_total{{reason="{reason}"}} {count}')
        text = metrics_text(sidecar.state, sidecar.flight.result) + "\n".join(lines) + "\n"
        return Response(200, text.encode(), "text/plain; version=0.0.4")

    def prestop(_: Request) -> Response:
        joined = sidecar.flight.started
        outcome, error = sidecar.flight.run()
        if outcome is None:
            return _json(500, {"error": type(error).__name__ if error else "no outcome"})
        return _json(200, {**outcome.summary(), "joined": joined})

    routes = {
        "/healthz": Route(healthz),
        "/metrics": Route(metrics),
        "/readyz": Route(readyz, lane="pool"),
        "/prestop": Route(
            prestop,
            methods=frozenset({"GET", "POST"}),
            lane="own",
            authorize=lambda r: sidecar.authorized(r.header(TOKEN_HEADER)),
        ),
    }
    server = BoundedHTTPServer((host, port), routes, limits)
    return server


def serve(sidecar: Sidecar, host: str, port: int, terminated: threading.Event) -> None:
    """Serve until ``terminated`` (SIGTERM), then linger and finish a running drain.

    The sidecar is closed on the way out, also when the address cannot be bound.
    """
    with sidecar:
        _serve(sidecar, host, port, terminated)
    log.info("sidecar_stopped")


def _serve(sidecar: Sidecar, host: str, port: int, terminated: threading.Event) -> None:
    state, clock = sidecar.state, sidecar.clock
    # Not ready before the hold has decided: a probe must not pass in the moment between the
    # registration and the take-out. (`prestop ready` runs no start-up: it leaves this off.)
    state.holding = sidecar.options.hold.enabled
    server = make_server(sidecar, host, port)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    threading.Thread(target=sidecar.start_up, daemon=True).start()
    log.info("sidecar_listening", host=host, port=server.server_address[1])
    terminated.wait()
    state.stop.set()
    linger = sidecar.options.term_linger
    log.info("sidecar_terminating", linger_s=linger)
    # The hook's HTTP call may arrive just after our SIGTERM: wait a moment for it to start.
    end = clock.now() + linger
    while not sidecar.flight.started and clock.now() < end:
        clock.sleep(0.05)
    if sidecar.flight.started:
        sidecar.flight.run()  # joins: returns when the running sequence has finished
    server.shutdown()
    server.server_close()
