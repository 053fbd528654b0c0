"""A real gateway (uvicorn, restartable on its port) + a real persistence worker + a tenant with one agent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from agent.spool import Spool
from core.settings import ServerSettings
from storage.accounts import create_agent, create_tenant, create_user
from storage.activity import EventRecord
from storage.db import make_engine
from tests.servers import RestartableGateway
from workers.builder import build_consumer
from workers.persist import persist_consumer
from workers.run import ConsumerFactory

FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.3, open_timeout_s=5, upload_kbps=100_000)


@dataclass
class World:
    gateway: RestartableGateway
    settings: ServerSettings
    tenant: str
    agent_id: str
    token: str
    database_url: str
    tmp_path: Path

    def session(self, spool: Spool, options: SessionOptions = FAST, **kw: Any) -> AgentSession:
        return AgentSession(self.gateway.url, self.token, options, name=self.agent_id, spool=spool, **kw)

    engine: Engine

    def events(self) -> list[EventRecord]:
        """The agent's stored events, by seq."""
        with Session(self.engine) as s:
            query = select(EventRecord).where(col(EventRecord.tenant_id) == self.tenant)
            return list(s.execute(query.order_by(col(EventRecord.seq))).scalars())

    def count(self) -> int:
        """How many events of the tenant are stored."""
        with Session(self.engine) as s:
            query = select(func.count()).where(col(EventRecord.tenant_id) == self.tenant)
            return int(s.execute(query).scalar_one())


def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@asynccontextmanager
async def world(
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    start: bool = True,
    persist: bool = True,
    **overrides: Any,
) -> AsyncIterator[World]:
    """Tenant + agent in the database, a gateway (started unless ``start`` is False), a persist
    worker (unless ``persist`` is False: the test runs its own, :func:`persisting`)."""
    engine = make_engine(database_url)
    tenant, agent_id = f"t{uuid.uuid4().hex[:10]}", f"pc-{uuid.uuid4().hex[:8]}"
    create_tenant(engine, tenant, "Offline tenant")
    create_user(engine, tenant, "alice", "Alice")
    token = create_agent(engine, tenant, agent_id, "alice")
    values: dict[str, Any] = {
        "data_dir": tmp_path / "server",
        "redis_url": redis_url,
        "database_url": database_url,
        "gateway_port": 0,
        "auth_cache_s": 0,
        "worker_block_ms": 20,
        "tenant_refresh_s": 0.2,
        "master_key": master_key(),
        **overrides,
    }
    settings = ServerSettings(**values)
    gateway = RestartableGateway(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if persist:
                await stack.enter_async_context(persisting(settings, engine))
            if start:
                await gateway.start()
            stack.push_async_callback(gateway.stop)
            yield World(gateway, settings, tenant, agent_id, token, database_url, tmp_path, engine)
    finally:
        engine.dispose()


def persisting(settings: ServerSettings, engine: Engine) -> contextlib.AbstractAsyncContextManager[None]:
    """A persistence worker (the stream consumer in group ``persist``) running in this event loop."""
    return consuming(settings, engine, persist_consumer)


def building(settings: ServerSettings, engine: Engine) -> contextlib.AbstractAsyncContextManager[None]:
    """The builder (the stream consumer in group ``build``) running in this event loop."""
    return consuming(settings, engine, build_consumer)


@asynccontextmanager
async def consuming(settings: ServerSettings, engine: Engine, make: ConsumerFactory) -> AsyncIterator[None]:
    """The stream consumer ``make`` builds, running in this event loop until the block ends."""
    stop = asyncio.Event()
    client = aioredis.Redis.from_url(settings.redis_url or "", decode_responses=True)
    running = asyncio.create_task(make(settings, engine, client).run(stop))
    try:
        yield
    finally:
        stop.set()
        await running
        await client.aclose()
