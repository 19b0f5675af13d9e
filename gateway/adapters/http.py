"""A small HTTP server on the asyncio loop (aiohttp): the gateway's /metrics and /healthz.

Invariants: it binds only where `http.listen` says (loopback in the examples), serves GET
only, runs until cancelled and releases the socket in `finally`. A bind failure is a
GatewayError with the address and the reason, raised before anything is served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from presence_gateway.errors import GatewayError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(host: str, port: int, routes: dict[str, Handler]) -> None:
    """Serve `routes` (path -> GET handler) on host:port until cancelled."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise GatewayError(f"http.listen {host}:{port}: cannot listen: {exc.strerror}"
                               ) from None
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
