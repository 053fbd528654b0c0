"""Real servers for tests: the gateway on uvicorn, port 0, in the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from realtime.app import create_app, uvicorn_config
from telework.settings import ServerSettings
from tests.waiting import wait_until


@asynccontextmanager
async def serving(settings: ServerSettings) -> AsyncIterator[tuple[Starlette, int]]:
    """The gateway app on a real uvicorn server on port 0; yields (app, port)."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), 15, what="uvicorn started")
    if task.done():
        task.result()
        raise RuntimeError("uvicorn exited before it started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
