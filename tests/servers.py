"""Real servers for tests: the gateway on uvicorn, port 0, in the test's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from core.settings import ServerSettings
from realtime.app import create_app, uvicorn_config
from realtime.embedded_redis import free_port
from realtime.gateway import Gateway
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


class RestartableGateway:
    """The gateway on uvicorn on a fixed port, known before the first start; a restart reuses it."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.port = settings.gateway_port or free_port()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.app: Starlette | None = None

    async def start(self) -> None:
        settings = self.settings.model_copy(update={"gateway_port": self.port})
        self.app = create_app(settings)
        server = uvicorn.Server(uvicorn_config(self.app, settings))
        task = asyncio.create_task(server.serve())
        self.server, self.task = server, task
        await wait_until(lambda: server.started or task.done(), 15, what="uvicorn started")
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before it started")

    def request_stop(self) -> None:
        """Ask uvicorn to stop now (from a callback that cannot await); :meth:`stop` waits for it."""
        if self.server is not None:
            self.server.should_exit = True

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.task, 15)
        self.server = self.task = None

    @property
    def gateway(self) -> Gateway:
        """The running gateway's session logic (set by the app's lifespan)."""
        if self.app is None or self.server is None:
            raise RuntimeError("the gateway is not running")
        gateway: Gateway = self.app.state.gateway
        return gateway

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent"
