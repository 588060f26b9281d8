"""A small HTTP/1.1 server that an unauthenticated client cannot knock over.

One event-loop thread owns every socket: it accepts, reads request heads (capped size, a
deadline from the first byte), decides from the head alone (route, method, token, framing,
body size) and writes responses without blocking. Only a request that passed those checks
reaches a thread, from a small bounded pool per lane; a cheap route is answered in the loop.
So an idle or slow connection costs one file descriptor and at most a few KB, never a thread,
and no body larger than ``max_body`` is ever read.

Limits: ``max_connections`` sockets at most; at the limit a new connection evicts the one that
has waited longest without a complete request (idle or slowloris), and is itself closed at once
when there is none. Refused calls are counted by reason (``refused_totals``) and logged at most
once per ``log_interval`` as one ``http_refused`` line with the counts.

The modules: :mod:`~agent.httpserver.messages` (limits, requests, responses, routes),
:mod:`~agent.httpserver.head` (deciding a request from its head, a pure function),
:mod:`~agent.httpserver.workers` (the bounded pools and the refusal counts) and
:mod:`~agent.httpserver.server` (the event loop and its connections).
"""

from agent.httpserver.messages import Lane, Limits, Request, Response, Route
from agent.httpserver.server import BoundedHTTPServer
from agent.httpserver.workers import RefusalLog

__all__ = ["BoundedHTTPServer", "Lane", "Limits", "RefusalLog", "Request", "Response", "Route"]
