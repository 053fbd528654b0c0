"""One live session per agent: replacement (4001), live-state ownership, heartbeat republish, pacing.

On a real gateway (uvicorn, port 0) with real Redis; the pure parts (registry, frame budget)
and the Lua writes of the live state on their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.rate import Bucket, take_tokens
from realtime import keys, live
from realtime.live_scripts import NOT_OWNER, REPUBLISHED, WRITTEN, owner_write
from realtime.protocol import Ack, Events, Heartbeat, Hello, LiveState, encode, parse_record
from realtime.reaper import reap_tenant
from realtime.registry import REPLACED_REASON, SessionRegistry
from storage.accounts import AgentIdentity
from tests.test_gateway import (
    Running,
    closed_with,
    gateway_on,
    gw,  # noqa: F401 - fixture
    live_of,
    recv,
    session,
    sqlite_db,  # noqa: F401 - fixture
    state,
)
from tests.waiting import wait_until

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)

# ------------------------------------------------------------------ pure: registry


@dataclass(eq=False)
class Entry:
    session_id: str
    identity: AgentIdentity


def entry(agent: str, session_id: str, tenant: str = "acme") -> Entry:
    return Entry(session_id, AgentIdentity(tenant=tenant, agent_id=agent, user=None, revoked=False))


def test_registry_keeps_one_session_per_agent_and_hands_back_the_replaced_one() -> None:
    """A second session of an agent replaces the first; removing the replaced one changes nothing."""
    registry: SessionRegistry[Entry] = SessionRegistry()
    first, second, other = entry("pc-1", "s1"), entry("pc-1", "s2"), entry("pc-2", "s3")
    assert registry.add(first) is None
    assert registry.add(other) is None
    assert registry.add(second) is first
    assert (registry.count(), registry.current("acme", "pc-1")) == (2, second)
    assert registry.by_tenant == {"acme": {second, other}}
    assert registry.remove(first) is False
    assert registry.count() == 2
    assert registry.remove(second) is True
    assert registry.remove(other) is True
    assert (registry.count(), registry.by_tenant, registry.all()) == (0, {}, [])


async def test_registry_openings_of_one_agent_take_turns() -> None:
    """While one opening of an agent holds its turn, another of the same agent waits; others do not."""
    registry: SessionRegistry[Entry] = SessionRegistry()
    order: list[str] = []
    release = asyncio.Event()

    async def opening(agent: str, name: str) -> None:
        async with registry.opening("acme", agent):
            order.append(f"{name} in")
            if name == "first":
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(opening("pc-1", "first"))
    await wait_until(lambda: order == ["first in"], 5, what="first opening holds the turn")
    second = asyncio.create_task(opening("pc-1", "second"))
    await asyncio.wait_for(opening("pc-2", "other"), 5)
    assert order == ["first in", "other in", "other out"]
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order[3:] == ["first out", "second in", "second out"]


# --------------------------------------------------------------- pure: frame budget


def test_frame_budget_lets_a_burst_through_then_paces_at_the_rate() -> None:
    """A full bucket of 3 gives 3 frames at once; the 4th waits 1/rate; idle time refills to burst."""
    budget = Bucket(3, 100.0)
    waits = []
    for _ in range(5):
        budget, wait = take_tokens(budget, 1, 100.0, rate=10.0, burst=3)
        waits.append(round(wait, 9))
    assert waits == [0.0, 0.0, 0.0, 0.1, 0.2]
    budget, wait = take_tokens(budget, 1, 1000.0, rate=10.0, burst=3)  # long idle: refilled to the burst
    assert (wait, budget.tokens) == (0.0, 2.0)


def test_frame_budget_refuses_nonsense_and_ignores_a_clock_going_back() -> None:
    """Zero rate or an empty burst is refused; an earlier clock refills nothing."""
    with pytest.raises(ValueError, match=r"^expected rate > 0 and burst > 0, got rate=0 burst=3$"):
        take_tokens(Bucket(3, 0.0), 1, 0.0, rate=0, burst=3)
    budget, _ = take_tokens(Bucket(1, 50.0), 1, 50.0, rate=1.0, burst=1)
    budget, wait = take_tokens(budget, 1, 10.0, rate=1.0, burst=1)
    assert wait == pytest.approx(41.0)


@given(
    st.floats(min_value=0.1, max_value=1000),
    st.integers(min_value=1, max_value=50),
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=60),
)
def test_frame_budget_never_lets_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Frames read by time t (each after its wait) never exceed burst + rate * t."""
    now = 0.0
    budget = Bucket(burst, now)
    for gap in gaps:
        now += gap
        budget, wait = take_tokens(budget, 1, now, rate, burst)
        assert wait >= 0
        now += wait
    assert len(gaps) <= burst + rate * now + 1e-6


# -------------------------------------------------------- the Lua writes (real Redis)


def owned(session_id: str | None, online: bool = True, **changes: Any) -> LiveState:
    return LiveState(
        tenant="acme", agent_id="pc-1", online=online, last_seen=T0, session_id=session_id, **changes
    )


async def test_owner_write_refuses_another_sessions_state_and_republishes_a_stale_refresh(
    aredis: aioredis.Redis,
) -> None:
    """Only the owner (or anyone on an absent or ownerless state) writes; a refresh publishes only on
    a difference from what the session believed."""
    hash_key = keys.live_hash("acme")
    pubsub = aredis.pubsub()
    await pubsub.subscribe(keys.live_channel("acme"))
    await pubsub.get_message(timeout=1)

    async def run(new: LiveState, believed: LiveState | None = None) -> int:
        believed_json = None if believed is None else encode(believed)
        command = owner_write("acme", "pc-1", new.session_id or "", encode(new), believed_json)
        reply: int = await aredis.execute_command(*command)
        return reply

    async def published() -> list[str]:
        found = []
        while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)) is not None:
            found.append(msg["data"])
        return found

    mine = owned("s1")
    assert await run(mine) == WRITTEN  # absent: written and published
    assert await published() == [encode(mine)]
    newer = owned("s1", state="away")
    assert await run(newer, believed=mine) == WRITTEN  # in sync: stored, not published
    assert await aredis.hget(hash_key, "pc-1") == encode(newer)
    assert await run(owned("s1", state="present"), believed=mine) == REPUBLISHED  # stored != believed
    assert len(await published()) == 1
    theirs = owned("s2")
    await aredis.hset(hash_key, "pc-1", encode(theirs))
    assert await run(owned("s1", online=False)) == NOT_OWNER
    assert await aredis.hget(hash_key, "pc-1") == encode(theirs)
    await aredis.hset(hash_key, "pc-1", encode(owned(None)))  # written by an older release: no owner
    assert await run(mine) == WRITTEN
    await aredis.hset(hash_key, "pc-1", "not json")
    assert await run(mine) == WRITTEN
    await pubsub.aclose()


async def test_mark_online_takes_over_and_mark_offline_needs_ownership(aredis: aioredis.Redis) -> None:
    """mark_online keeps the state and names the new owner; the replaced session cannot mark offline."""
    first = await live.mark_online(aredis, "acme", "pc-1", "Alice", T0, "s1")
    await aredis.execute_command(*live.write(first.model_copy(update={"state": "away", "last_seq": 4})))
    second = await live.mark_online(aredis, "acme", "pc-1", "Alice", T0 + timedelta(seconds=1), "s2")
    assert (second.session_id, second.state, second.last_seq, second.online) == ("s2", "away", 4, True)
    assert await live.mark_offline(aredis, first, T0 + timedelta(seconds=2)) is None
    assert await live.load(aredis, "acme", "pc-1") == second
    gone = await live.mark_offline(aredis, second, T0 + timedelta(seconds=3))
    assert gone is not None and await live.load(aredis, "acme", "pc-1") == gone
    assert (gone.online, gone.session_id) == (False, "s2")
    assert await aredis.sismember(keys.TENANTS, "acme")


# ------------------------------------------------------------------ on a gateway


def closed_sessions(caplog: pytest.LogCaptureFixture) -> dict[str, bool]:
    """session_id -> replaced, of every 'session closed' the gateway logged."""
    return {
        r.session_id: r.replaced  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "session closed"
    }


async def test_a_second_session_on_the_same_gateway_closes_the_first_with_4001(
    gw: Running,  # noqa: F811 - fixture
    aredis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The newer session owns the state; the older is closed 4001 naming why and leaves it online."""
    caplog.set_level(logging.INFO, logger="realtime.gateway")
    async with session(gw) as (old, first), session(gw) as (new, second):
        assert await closed_with(old) == (4001, REPLACED_REASON)
        await wait_until(lambda: first.session_id in closed_sessions(caplog), 5, what="old ended")
        assert closed_sessions(caplog)[first.session_id] is True
        stored = await live_of(aredis, gw)
        assert stored is not None and (stored.online, stored.session_id) == (True, second.session_id)
        await new.send(encode(Events(events=[state(1, "away")])))
        assert await recv(new) == Ack(seq=1)
        assert gw.gateway.session_count() == 1
    gone = await wait_until(lambda: _offline(aredis, gw), 5, what="offline after the newer session closed")
    assert (gone.session_id, gone.state) == (second.session_id, "away")


async def _offline(redis: aioredis.Redis, running: Running) -> LiveState | None:
    stored = await live_of(redis, running)
    return stored if stored is not None and not stored.online else None


async def test_concurrent_openings_of_one_agent_leave_exactly_the_owner_open(
    gw: Running,  # noqa: F811 - fixture
    aredis: aioredis.Redis,
) -> None:
    """Five sessions of one agent opened at once: the one left open is the live state's owner."""

    async def open_one() -> tuple[Any, str | None]:
        ws = await connect(gw.url, proxy=None)
        await ws.send(encode(Hello(token=gw.token, agent_version="test", protocol=1)))
        try:
            welcome = await recv(ws)
        except ConnectionClosed:  # replaced by a later opening before its welcome reached it
            assert (ws.close_code, ws.close_reason) == (4001, REPLACED_REASON)
            return ws, None
        return ws, welcome.session_id

    opened = await asyncio.gather(*(open_one() for _ in range(5)))
    survivors = []
    for ws, session_id in opened:
        if session_id is None:
            continue
        try:
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
            await recv(ws)
            survivors.append(session_id)
        except ConnectionClosed:
            assert (ws.close_code, ws.close_reason) == (4001, REPLACED_REASON)
    stored = await live_of(aredis, gw)
    assert stored is not None
    assert (survivors, stored.session_id, stored.online) == ([stored.session_id], stored.session_id, True)
    for ws, _ in opened:
        await ws.close()


async def test_a_session_whose_state_another_gateway_took_is_closed_4001_at_its_next_write(
    gw: Running,  # noqa: F811 - fixture
    aredis: aioredis.Redis,
) -> None:
    """After another gateway's session took the state, this one's heartbeat ends it with 4001 and its
    end leaves the state as the other session wrote it; its events are still stored and acked."""
    async with session(gw) as (ws, _welcome):
        taken = await live.mark_online(
            aredis, gw.tenant, gw.agent_id, "Alice", datetime.now(UTC), "elsewhere"
        )
        await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
        assert await closed_with(ws) == (4001, REPLACED_REASON)
    async with session(gw) as (ws, welcome):
        await live.mark_online(aredis, gw.tenant, gw.agent_id, "Alice", datetime.now(UTC), "elsewhere")
        await ws.send(encode(Events(events=[state(1, "away")])))
        assert await recv(ws) == Ack(seq=1)
        assert await closed_with(ws) == (4001, REPLACED_REASON)
    assert await aredis.xlen(keys.events_stream(gw.tenant)) == 1
    await wait_until(lambda: gw.gateway.session_count() == 0, 5, what="both sessions ended")
    stored = await live_of(aredis, gw)
    assert stored is not None and (stored.online, stored.session_id) == (True, "elsewhere")
    assert taken.session_id == "elsewhere" != welcome.session_id


async def test_a_heartbeat_republishes_a_state_reaped_or_lost_while_the_session_lives(
    gw: Running,  # noqa: F811 - fixture
    aredis: aioredis.Redis,
) -> None:
    """Reaped to offline, or deleted: the next heartbeat stores and publishes online again; in sync,
    a heartbeat publishes nothing (the next message is the event's)."""
    pubsub = aredis.pubsub()
    await pubsub.subscribe(keys.live_channel(gw.tenant))
    await pubsub.get_message(timeout=1)

    async def next_published() -> LiveState:
        msg = await wait_until(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2), 5, what="a publish"
        )
        found: LiveState = parse_record(msg["data"], LiveState)
        return found

    try:
        async with session(gw) as (ws, welcome):
            assert (await next_published()).online is True  # the opening
            future = datetime.now(UTC) + timedelta(hours=1)
            assert await reap_tenant(aredis, gw.tenant, future, 60) == [gw.agent_id]
            assert (await next_published()).online is False
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
            await recv(ws)
            back = await next_published()
            assert (back.online, back.session_id) == (True, welcome.session_id)
            assert await live_of(aredis, gw) == back
            await aredis.hdel(keys.live_hash(gw.tenant), gw.agent_id)
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
            await recv(ws)
            again = await next_published()
            assert (again.online, again.session_id) == (True, welcome.session_id)
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))  # in sync: stored, not published
            await recv(ws)
            await ws.send(encode(Events(events=[state(1, "peeking")])))
            assert await recv(ws) == Ack(seq=1)
            assert (await next_published()).state == "peeking"
    finally:
        await pubsub.aclose()


async def test_frames_over_the_rate_are_paced_and_none_is_lost(
    sqlite_db: str,  # noqa: F811 - fixture
    redis_url: str,
    tmp_path: Path,
) -> None:
    """At 20 frames/s with a burst of 5, 25 heartbeats sent at once are all answered, over >= 1 s."""
    async with (
        gateway_on(sqlite_db, redis_url, tmp_path, session_frames_per_s=20, session_frame_burst=5) as running,
        session(running) as (ws, _welcome),
    ):
        started = time.monotonic()
        for _ in range(25):
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
        replies = [await recv(ws) for _ in range(25)]
        elapsed = time.monotonic() - started
    assert [r.type for r in replies] == ["heartbeat"] * 25
    assert elapsed >= (25 - 5) / 20 - 0.05
