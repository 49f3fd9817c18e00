"""Start an aiohttp application on host:port (port 0: any free port) for an admin server."""

from __future__ import annotations

from contextlib import AsyncExitStack

from aiohttp import web


async def serve(app: web.Application, host: str, port: int, stack: AsyncExitStack) -> str:
    """Serve ``app`` until ``stack`` closes; returns its base URL with the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return f"http://{host}:{bound}"
