"""HTTP on the asyncio loop (aiohttp): the gateway's /metrics and /healthz, the dashboard.

Invariants: it binds only where it is told (loopback in the examples), releases the socket
when the block or the task ends, and a bind failure is a GatewayError with the address and
the reason, raised before anything is served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from presence_gateway.errors import GatewayError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def listening(app: web.Application, host: str, port: int, *,
                    shutdown_timeout: float = 2.0) -> AsyncIterator[str]:
    """Serve `app` on host:port for the block; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def serve(host: str, port: int, routes: dict[str, Handler]) -> None:
    """Serve `routes` (path -> GET handler) on host:port until cancelled."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    async with listening(app, host, port):
        await asyncio.Event().wait()
