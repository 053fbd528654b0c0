"""Live states left online by a dead gateway are reconciled; live sessions are never reaped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from core.settings import ServerSettings, sqlite_url
from realtime import keys
from realtime.live_scripts import compare_and_set
from realtime.protocol import (
    PROTOCOL_VERSION,
    Heartbeat,
    Hello,
    LiveState,
    encode,
    parse_record,
    parse_server_frame,
)
from realtime.reaper import reap_tenant, stale
from storage.db import make_engine, upgrade
from tests.servers import serving
from tests.test_gateway import provision
from tests.waiting import wait_until

NOW = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def state(agent: str, online: bool, age_s: float, tenant: str = "acme") -> LiveState:
    return LiveState(
        tenant=tenant,
        agent_id=agent,
        online=online,
        state="present",
        last_seen=NOW - timedelta(seconds=age_s),
    )


def test_stale_picks_only_online_states_past_the_limit() -> None:
    """Offline states and recently seen ones are left alone; the limit itself is not yet stale."""
    states = [
        state("old", True, 31),
        state("edge", True, 30),
        state("fresh", True, 5),
        state("gone", False, 99),
    ]
    assert [s.agent_id for s in stale(states, NOW, 30)] == ["old"]


async def test_reap_marks_stale_agents_offline_and_publishes(aredis: aioredis.Redis) -> None:
    """A stale online agent becomes offline (keeping its last_seen) and the change is published."""
    await aredis.hset(
        keys.live_hash("acme"),
        mapping={
            "old": encode(state("old", True, 60)),
            "fresh": encode(state("fresh", True, 1)),
        },
    )
    pubsub = aredis.pubsub()
    await pubsub.subscribe(keys.live_channel("acme"))
    await pubsub.get_message(timeout=1)
    assert await reap_tenant(aredis, "acme", NOW, 30) == ["old"]
    message = await wait_until(lambda: pubsub.get_message(timeout=0.2), 5, what="published offline state")
    published = parse_record(message["data"], LiveState)
    assert (published.agent_id, published.online, published.last_seen) == (
        "old",
        False,
        NOW - timedelta(seconds=60),
    )
    stored = await aredis.hgetall(keys.live_hash("acme"))
    assert parse_record(stored["old"], LiveState).online is False
    assert parse_record(stored["fresh"], LiveState).online is True
    await pubsub.aclose()


async def test_compare_and_set_refuses_a_state_changed_since_it_was_read(aredis: aioredis.Redis) -> None:
    """If a session refreshed the state after the reaper read it, the reaper's write is refused."""
    read = encode(state("pc", True, 60))
    refreshed = encode(state("pc", True, 0))
    await aredis.hset(keys.live_hash("acme"), "pc", refreshed)
    offline = encode(state("pc", False, 60))
    done = await aredis.execute_command(*compare_and_set("acme", "pc", read, offline))
    assert done == 0
    assert await aredis.hget(keys.live_hash("acme"), "pc") == refreshed


async def test_gateway_start_reconciles_leftovers_but_keeps_heartbeating_sessions(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A starting gateway marks a dead gateway's agent offline; its own heartbeating session stays online."""
    database_url = sqlite_url(tmp_path)
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    tenant, agent_id, token = provision(database_url)
    leftover = LiveState(
        tenant=tenant, agent_id="pc-dead", online=True, last_seen=datetime.now(UTC) - timedelta(minutes=5)
    )
    await aredis.hset(keys.live_hash(tenant), "pc-dead", encode(leftover))
    await aredis.sadd(keys.TENANTS, tenant)
    settings = ServerSettings(
        data_dir=tmp_path,
        redis_url=redis_url,
        database_url=database_url,
        gateway_port=0,
        heartbeat_timeout_s=0.5,
    )

    async def online(agent: str) -> bool | None:
        raw = await aredis.hget(keys.live_hash(tenant), agent)
        return None if raw is None else parse_record(raw, LiveState).online

    async with serving(settings) as (_app, port):

        async def leftover_offline() -> bool:
            return await online("pc-dead") is False

        await wait_until(leftover_offline, 5, what="leftover reaped")
        async with connect(f"ws://127.0.0.1:{port}/v1/agent") as ws:
            await ws.send(encode(Hello(token=token, agent_version="t", protocol=PROTOCOL_VERSION)))
            parse_server_frame(await ws.recv())
            for _ in range(6):  # 6 x 0.25 s = three heartbeat timeouts, i.e. more than the stale limit
                await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
                assert parse_server_frame(await ws.recv()).type == "heartbeat"
                await asyncio.sleep(0.25)  # the agent's heartbeat period, not a synchronisation
            assert await online(agent_id) is True
