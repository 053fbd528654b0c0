"""Two gateways over one Redis and one database agree on where an agent is.

Both gateways are real uvicorn servers on port 0 in this process. The agent is an
:class:`agent.client.AgentSession`; its first connection runs through a TCP relay, so the
test can cut the agent's side (it reconnects, to the other gateway) while the first gateway
still holds its side open, as after a network change, and end that side later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from core.settings import ServerSettings
from realtime import keys
from realtime.gateway import Gateway
from realtime.protocol import Heartbeat, Hello, LiveState, StatePayload, encode, parse_record
from realtime.registry import REPLACED_REASON
from tests.servers import serving
from tests.test_gateway import closed_with, provision, recv
from tests.test_gateway import sqlite_db as sqlite_db  # fixture
from tests.waiting import wait_until

FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.3, open_timeout_s=5)


@dataclass
class Relay:
    """TCP relay to one port; :meth:`cut` drops the client side only, :meth:`end` the server side."""

    target: int
    port: int = 0
    server: asyncio.Server | None = None
    upstream: list[asyncio.StreamWriter] = field(default_factory=list)
    downstream: list[asyncio.StreamWriter] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    frozen: bool = False

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.upstream.append(up_writer)
        self.downstream.append(writer)
        self.pumps += [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if not self.frozen:
                    sink.write(data)
                    await sink.drain()

    def cut(self) -> None:
        """The client loses its connection; the server's side stays open and hears nothing more."""
        self.frozen = True
        for writer in self.downstream:
            writer.transport.abort()

    def end(self) -> None:
        """The server's side closes too."""
        for writer in self.upstream:
            writer.close()

    async def stop(self) -> None:
        self.end()
        for task in self.pumps:
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent"


@dataclass
class Pair:
    a: Gateway
    b: Gateway
    a_port: int
    b_port: int
    tenant: str
    agent_id: str
    token: str

    def url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}/v1/agent"


@asynccontextmanager
async def two_gateways(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Pair]:
    tenant, agent_id, token = provision(database_url)
    settings = ServerSettings(
        data_dir=tmp_path, redis_url=redis_url, database_url=database_url, gateway_port=0, auth_cache_s=0
    )
    async with serving(settings) as (app_a, port_a), serving(settings) as (app_b, port_b):
        yield Pair(app_a.state.gateway, app_b.state.gateway, port_a, port_b, tenant, agent_id, token)


async def stored_live(redis: aioredis.Redis, pair: Pair) -> LiveState | None:
    raw = await redis.hget(keys.live_hash(pair.tenant), pair.agent_id)
    return None if raw is None else parse_record(raw, LiveState)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == text]


async def test_an_agent_moving_to_another_gateway_stays_online_until_it_leaves_the_new_one(
    sqlite_db: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Moved from A to B while A still holds its old session: online and owned by the new session;
    the old session ending on A publishes no offline; leaving B marks it offline."""
    caplog.set_level(logging.INFO, logger="realtime.gateway")
    async with two_gateways(sqlite_db, redis_url, tmp_path) as pair:
        relay = Relay(pair.a_port)
        await relay.start()
        agent = AgentSession(relay.url, pair.token, FAST, name=pair.agent_id)
        runner = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.connected.wait(), 10)
            assert agent.welcome is not None
            first = agent.welcome.session_id
            agent.emit(StatePayload(state="away"))
            await asyncio.wait_for(agent.wait_acked(), 10)

            agent.gateway_url = pair.url(pair.b_port)  # the agent's next connection goes to B
            relay.cut()
            await wait_until(lambda: agent.connects == 2 and agent.connected.is_set(), 10, what="on B")
            second = agent.welcome.session_id
            moved = await stored_live(aredis, pair)
            assert moved is not None
            assert (moved.online, moved.session_id, moved.state) == (True, second, "away")
            assert (pair.a.session_count(), pair.b.session_count()) == (1, 1)  # A still holds the old one

            pubsub = aredis.pubsub()
            await pubsub.subscribe(keys.live_channel(pair.tenant))
            await pubsub.get_message(timeout=1)
            relay.end()  # the old session ends on A
            await wait_until(
                lambda: messages(caplog, "agent left online: a newer session owns its live state"),
                10,
                what="A's offline write refused",
            )
            assert pair.a.session_count() == 0
            assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
            await pubsub.aclose()
            after = await stored_live(aredis, pair)
            assert after is not None and (after.online, after.session_id) == (True, second)

            agent.emit(StatePayload(state="present"))
            await asyncio.wait_for(agent.wait_acked(), 10)
            current = await stored_live(aredis, pair)
            assert current is not None and (current.online, current.state) == (True, "present")
        finally:
            agent.stop()
            await runner
            await relay.stop()

        async def offline() -> LiveState | None:
            found = await stored_live(aredis, pair)
            return found if found is not None and not found.online else None

        gone = await wait_until(offline, 10, what="offline after leaving B")
        assert (gone.session_id, gone.state, first != second) == (second, "present", True)


async def test_the_old_gateway_closes_its_session_4001_at_its_next_write_after_the_move(
    sqlite_db: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A session left on A writes (a heartbeat) after the agent opened one on B: A closes it with 4001
    and the state stays as B wrote it."""
    async with (
        two_gateways(sqlite_db, redis_url, tmp_path) as pair,
        connect(pair.url(pair.a_port), proxy=None) as old,
    ):
        await old.send(encode(Hello(token=pair.token, agent_version="test", protocol=1)))
        await recv(old)
        agent = AgentSession(pair.url(pair.b_port), pair.token, FAST, name=pair.agent_id)
        runner = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.connected.wait(), 10)
            assert agent.welcome is not None
            await old.send(encode(Heartbeat(ts=datetime.now(UTC))))
            assert await closed_with(old) == (4001, REPLACED_REASON)
            await wait_until(lambda: pair.a.session_count() == 0, 10, what="A's session ended")
            state = await stored_live(aredis, pair)
            assert state is not None
            assert (state.online, state.session_id) == (True, agent.welcome.session_id)
            assert (agent.connects, agent.fatal) == (1, None)
        finally:
            agent.stop()
            await runner
