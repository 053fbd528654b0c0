"""End to end: real agents -> real gateway (uvicorn, port 0) -> Redis -> two workers -> database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import websockets
from sqlalchemy import func, select
from sqlmodel import Session, col

from core.settings import ServerSettings
from realtime import keys
from realtime.protocol import (
    PROTOCOL_VERSION,
    Events,
    Hello,
    LiveState,
    StateEvent,
    StatePayload,
    encode,
    new_event_id,
    parse_record,
)
from storage.accounts import create_agent, create_tenant
from storage.activity import EventRecord
from storage.db import make_engine
from tests.servers import serving
from tests.waiting import wait_until
from workers.persist import persist_consumer

AGENTS = 20
EVENTS_PER_AGENT = 1000
FRAME = 100
STATES = ("present", "away", "peeking", "impersonation", "camera_blocked")


async def run_agent(url: str, token: str) -> int:
    """Send EVENTS_PER_AGENT state events in frames of FRAME; return the last acked seq."""
    async with websockets.connect(url) as ws:
        await ws.send(encode(Hello(token=token, agent_version="test", protocol=PROTOCOL_VERSION)))
        assert json.loads(await ws.recv())["type"] == "welcome"
        acked = 0
        for start in range(1, EVENTS_PER_AGENT + 1, FRAME):
            events = [
                StateEvent(
                    id=new_event_id(),
                    seq=seq,
                    ts=datetime.now(UTC),
                    payload=StatePayload(state=STATES[seq % len(STATES)]),
                )
                for seq in range(start, start + FRAME)
            ]
            await ws.send(encode(Events(events=events)))
            reply = json.loads(await ws.recv())
            while reply["type"] == "stored":  # the database watermark of earlier frames, in between
                assert reply["seq"] <= acked
                reply = json.loads(await ws.recv())
            assert reply == {"type": "ack", "seq": start + FRAME - 1}
            acked = reply["seq"]
        return acked


def stored(database_url: str, tenant: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as s:
            total, distinct = s.execute(
                select(func.count(), func.count(func.distinct(EventRecord.id))).where(
                    col(EventRecord.tenant_id) == tenant
                )
            ).one()
        return int(total), int(distinct)
    finally:
        engine.dispose()


@pytest.mark.slow
async def test_twenty_agents_thousand_events_each_stored_exactly_once(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """20 agents x 1,000 events end up in the database exactly once and the live state is right."""
    tenant = "e2e"
    engine = make_engine(database_url)
    create_tenant(engine, tenant, "End to end")
    tokens = [create_agent(engine, tenant, f"pc-{i:02d}") for i in range(AGENTS)]
    settings = ServerSettings(
        redis_url=redis_url, database_url=database_url, data_dir=tmp_path, worker_block_ms=50
    )
    stop = asyncio.Event()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    workers = [
        persist_consumer(settings.model_copy(update={"worker_name": f"w{i}"}), engine, client)
        for i in range(2)
    ]
    worker_tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async with serving(settings) as (_app, port):
            url = f"ws://127.0.0.1:{port}/v1/agent"
            acked = await asyncio.gather(*(run_agent(url, t) for t in tokens))
            assert acked == [EVENTS_PER_AGENT] * AGENTS
            expected = AGENTS * EVENTS_PER_AGENT
            await wait_until(
                lambda: stored(database_url, tenant)[0] >= expected, timeout=60, what="all events stored"
            )
            assert stored(database_url, tenant) == (expected, expected)
            live = await client.hgetall(keys.live_hash(tenant))
            states = {agent: parse_record(raw, LiveState) for agent, raw in live.items()}
            assert sorted(states) == [f"pc-{i:02d}" for i in range(AGENTS)]
            for state in states.values():
                assert state.last_seq == EVENTS_PER_AGENT
                assert state.state == STATES[EVENTS_PER_AGENT % len(STATES)]

        async def nothing_pending() -> bool:
            info = await client.xpending(keys.events_stream(tenant), keys.PERSIST_GROUP)
            return bool(info["pending"] == 0)

        await wait_until(nothing_pending, timeout=10, what="every entry acked")
    finally:
        stop.set()
        await asyncio.gather(*worker_tasks)
        await client.aclose()
        engine.dispose()
