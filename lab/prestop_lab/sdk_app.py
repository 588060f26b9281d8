"""A Python app and a Python subscriber on the official Nacos client (``nacos-sdk-python``).

The card's Python client for real: ``v2.nacos`` (nacos-sdk-python 3.x) talks gRPC to a real
Nacos 2.x or 3.x server with username/password.

* ``python -m prestop_lab.sdk_app serve ...`` registers itself (weight and metadata given),
  serves ``200 ok`` on every path (the Spring consumer calls ``/api/work``), prints
  ``sdk-app ready`` and deregisters on SIGTERM.
* ``python -m prestop_lab.sdk_app subscribe ...`` subscribes with a listener and prints one JSON
  line per push: ``{"t": <time.time()>, "mono": <time.monotonic()>, "hosts": [...]}``.
  ``time.monotonic()`` is CLOCK_MONOTONIC, shared by every process on the machine, so a driver
  can subtract its own readings.

The SDK is untyped; :class:`SdkNaming` is the narrow typed wrapper the rest of the lab uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READY = "sdk-app ready"
SUBSCRIBED = "sdk-subscriber subscribed"


@dataclass(frozen=True)
class Host:
    """One instance as the SDK hands it to a listener."""

    ip: str
    port: int
    weight: float
    enabled: bool
    healthy: bool
    metadata: dict[str, str] = field(default_factory=dict)


Listener = Callable[[list[Host]], Awaitable[None]]


class SdkNaming:
    """The few calls of ``v2.nacos.NacosNamingService`` the lab uses, typed."""

    def __init__(
        self,
        server_addr: str,
        username: str,
        password: str,
        *,
        work_dir: str | None = None,
        update_cache_when_empty: bool = True,
    ) -> None:
        from v2.nacos import ClientConfigBuilder  # type: ignore[import-untyped]

        work = work_dir or tempfile.mkdtemp(prefix="prestop-sdk-")
        config = (
            ClientConfigBuilder()
            .server_address(server_addr)
            .username(username)
            .password(password)
            .log_dir(f"{work}/log")
            .cache_dir(f"{work}/cache")
            .build()
        )
        # Off by default in the SDK: an empty push (the last instance disabled) would be
        # dropped without calling the listener.
        config.update_cache_when_empty = update_cache_when_empty
        self._config = config
        self._service: Any = None

    async def start(self) -> None:
        from v2.nacos import NacosNamingService

        self._service = await NacosNamingService.create_naming_service(self._config)

    async def register(
        self, service: str, ip: str, port: int, weight: float, metadata: dict[str, str]
    ) -> bool:
        from v2.nacos import RegisterInstanceParam

        param = RegisterInstanceParam(
            service_name=service, ip=ip, port=port, weight=weight, metadata=metadata
        )
        return bool(await self._service.register_instance(param))

    async def deregister(self, service: str, ip: str, port: int) -> bool:
        from v2.nacos import DeregisterInstanceParam

        param = DeregisterInstanceParam(service_name=service, ip=ip, port=port)
        return bool(await self._service.deregister_instance(param))

    async def subscribe(self, service: str, listener: Listener) -> None:
        from v2.nacos import SubscribeServiceParam

        async def callback(instances: list[Any] | None) -> None:
            await listener([_host(i) for i in instances or []])

        param = SubscribeServiceParam(service_name=service, subscribe_callback=callback)
        await self._service.subscribe(param)

    async def shutdown(self) -> None:
        if self._service is not None:
            await self._service.shutdown()


def _host(instance: Any) -> Host:
    return Host(
        ip=str(instance.ip),
        port=int(instance.port),
        weight=float(instance.weight),
        enabled=bool(instance.enabled),
        healthy=bool(instance.healthy),
        metadata={str(k): str(v) for k, v in (instance.metadata or {}).items()},
    )


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the consumer's pooled client expects

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def serve(args: argparse.Namespace) -> int:
    http = ThreadingHTTPServer(("127.0.0.1", args.port), _Ok)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    naming = SdkNaming(args.server_addr, args.username, args.password)
    await naming.start()
    metadata = json.loads(args.metadata)
    if not await naming.register(args.service, args.ip, args.port, args.weight, metadata):
        print("sdk-app register failed", flush=True)
        return 1
    print(f"{READY} {args.ip}:{args.port} weight={args.weight:g}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ok = await naming.deregister(args.service, args.ip, args.port)
    print(f"sdk-app deregistered={ok}", flush=True)
    await naming.shutdown()
    http.shutdown()
    return 0


async def subscribe(args: argparse.Namespace) -> int:
    naming = SdkNaming(args.server_addr, args.username, args.password)
    await naming.start()

    async def listener(hosts: list[Host]) -> None:
        line = {"t": time.time(), "mono": time.monotonic(), "hosts": [asdict(h) for h in hosts]}
        print(json.dumps(line), flush=True)

    await naming.subscribe(args.service, listener)
    print(SUBSCRIBED, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await naming.shutdown()
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m prestop_lab.sdk_app")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "subscribe"):
        p = sub.add_parser(name)
        p.add_argument("--server-addr", required=True, help="host:port of Nacos's HTTP port")
        p.add_argument("--username", default="nacos")
        p.add_argument("--password", required=True)
        p.add_argument("--service", default="provider")
        if name == "serve":
            p.add_argument("--ip", default="127.0.0.1")
            p.add_argument("--port", type=int, required=True)
            p.add_argument("--weight", type=float, default=1.0)
            p.add_argument("--metadata", default="{}", help="a JSON object of strings")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    run = serve if args.command == "serve" else subscribe
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
