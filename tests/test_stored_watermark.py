"""End-to-end durability: an agent frees an event only when the database holds it (``stored``),
and a full event store pushes back instead of trimming what no consumer has read."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from agent.spool import Spool
from core.settings import sqlite_url
from realtime import keys
from realtime.protocol import CLOSE_TRY_AGAIN_LATER, MAX_SEQ, LiveState, StatePayload, encode
from realtime.stream_positions import (
    GroupPosition,
    done_below,
    format_id,
    next_id,
    parse_id,
    trim_point,
)
from realtime.watermarks import StoredTracker
from storage.db import make_engine
from tests.agent_world import FAST, building, persisting, world
from tests.waiting import wait_until

# ------------------------------------------------------------------ pure


def test_tracker_reports_the_highest_seq_of_the_frames_below_the_bound_once() -> None:
    """Frames below the group's done bound are released; the seq reported only grows."""
    tracker = StoredTracker()
    tracker.added("100-0", 5)
    tracker.added("100-7", 9)
    tracker.added("205-1", 12)
    assert tracker.release(None) is None  # no persistence group yet: nothing is known stored
    assert tracker.release("100-7") == 5  # "100-7" itself is not done yet
    assert tracker.release("100-7") is None
    assert tracker.release("205-2") == 12
    assert (list(tracker.frames), tracker.reported) == ([], 12)
    tracker.added("300-0", 3)  # a resend of older seqs after a reconnect: never reported backwards
    assert tracker.release("999-0") is None


def test_done_bound_is_the_first_pending_entry_or_just_past_the_last_delivered() -> None:
    """With entries pending the group is done below the oldest; without, up to its last delivered."""
    assert done_below(GroupPosition("persist", "50-3", "20-1", 4)) == "20-1"
    assert done_below(GroupPosition("persist", "50-3")) == "50-4"
    assert done_below(GroupPosition("persist", "0-0")) == "0-1"


def test_trim_point_waits_for_every_required_group_and_takes_the_slowest() -> None:
    """No trimming while a required group is missing; else below the slowest group."""
    persist = GroupPosition("persist", "90-0")
    build = GroupPosition("build", "70-0", "60-2", 1)
    assert trim_point([persist], ("persist", "build")) is None
    assert trim_point([], ()) is None
    assert trim_point([persist, build], ("persist", "build")) == "60-2"
    assert trim_point([persist, GroupPosition("build", "95-0")], ("persist", "build")) == "90-1"


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_entry_ids_round_trip_and_order_like_redis(ms: int, seq: int) -> None:
    """parse_id inverts format_id, and next_id is the next id in Redis order."""
    text = format_id((ms, seq))
    assert parse_id(text) == (ms, seq)
    assert parse_id(next_id(text)) == (ms, seq + 1)


@given(st.text(max_size=30))
def test_parse_id_refuses_what_is_not_an_entry_id_with_a_value_error(text: str) -> None:
    """Any text is an id or a ValueError naming it; nothing else escapes."""
    try:
        ms, _seq = parse_id(text)
    except ValueError as exc:
        assert repr(text) in str(exc)
    else:
        assert ms >= 0 or text.startswith("-")


# ------------------------------------------------------------------ end to end


async def test_events_leave_the_spool_only_once_the_database_holds_them(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Acked with no worker running: all 300 stay in the spool; once a worker commits, `stored` frees them."""
    async with world(redis_url, database_url, tmp_path, persist=False) as w:
        spool = Spool.in_dir(tmp_path / "agent")
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        try:
            for i in range(300):
                session.emit(StatePayload(state="present" if i % 2 else "away"))
            await asyncio.wait_for(session.wait_acked(), 20)
            assert (session.acked_seq, session.stored_seq, spool.pending_count(), w.count()) == (
                300,
                0,
                300,
                0,
            )
            async with persisting(w.settings, w.engine):
                await asyncio.wait_for(session.wait_stored(), 20)
                assert (session.stored_seq, spool.pending_count(), w.count()) == (300, 0, 300)
        finally:
            session.stop()
            await runner
        spool.close()


async def test_acked_events_lost_by_redis_are_resent_from_the_spool_and_stored(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Redis loses 200 acked events before any worker read them: after a reconnect the agent sends
    them again from its spool, and every event is stored exactly once."""
    async with world(redis_url, database_url, tmp_path, persist=False) as w:
        spool = Spool.in_dir(tmp_path / "agent")
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            emitted = [session.emit(StatePayload(state="present")) for _ in range(200)]
            await asyncio.wait_for(session.wait_acked(), 20)
            await client.delete(keys.events_stream(w.tenant))  # a crash before the AOF reached disk
            await w.gateway.stop()
            await w.gateway.start()
            async with persisting(w.settings, w.engine):
                await asyncio.wait_for(session.wait_stored(), 30)
        finally:
            session.stop()
            await runner
            await client.aclose()
        assert [(r.id, r.seq) for r in w.events()] == [(str(e.id), e.seq) for e in emitted]
        assert spool.pending_count() == 0
        spool.close()


async def test_a_full_stream_pushes_agents_back_and_trims_nothing_unread(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """A stream at its capacity (1,000 unread entries): nothing is trimmed, the agent is refused
    with store_full / 1013 and keeps its events; once the stream drains, each is stored once."""
    overrides: dict[str, Any] = {"stream_maxlen": 1000, "stream_keep_s": 0, "trim_interval_s": 0.2}
    async with world(redis_url, database_url, tmp_path, persist=False, **overrides) as w:
        spool = Spool.in_dir(tmp_path / "agent")
        acks: list[int] = []
        session = w.session(spool, replace(FAST, batch_max=100, window=300), on_ack=acks.append)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        stream = keys.events_stream(w.tenant)
        runner: asyncio.Task[None] | None = None
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(1000):
                    pipe.xadd(stream, {"e": f"unread {i}"})
                await pipe.execute()
            runner = asyncio.create_task(session.run())
            await wait_until(session.connected.is_set, 10, what="session open")
            reporter = w.gateway.gateway.watermarks
            await wait_until(lambda: reporter.is_full(w.tenant), 10, what="the gateway saw the stream full")
            emitted = [session.emit(StatePayload(state="present")) for _ in range(1500)]
            await wait_until(lambda: session.attempts >= 3, 30, what="the agent pushed back and retrying")
            assert (await client.xlen(stream), acks) == (1000, [])  # nothing trimmed, nothing taken
            assert (session.stored_seq, spool.pending_count(), session.fatal) == (0, 1500, None)
            assert session.last_close_code == CLOSE_TRY_AGAIN_LATER
            await client.delete(stream)  # the unread entries were someone else's: gone
            # the consumers (persistence with its trim pass, and the builder) catch up: the stream
            # shrinks below capacity again and the agent's events get in and are stored
            async with persisting(w.settings, w.engine), building(w.settings, w.engine):
                await asyncio.wait_for(session.wait_stored(), 60)
        finally:
            session.stop()
            if runner is not None:
                await runner
            await client.aclose()
        # the agent resent everything from its spool: each event stored once, none lost
        assert [(r.id, r.seq) for r in w.events()] == [(str(e.id), e.seq) for e in emitted]
        assert spool.pending_count() == 0
        spool.close()


def test_server_sqlite_commits_reach_the_disk_before_they_return(tmp_path: Path) -> None:
    """Server SQLite runs synchronous=FULL (2): a commit `stored` reports survives a power cut."""
    engine = make_engine(sqlite_url(tmp_path))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    finally:
        engine.dispose()


async def test_an_agent_whose_server_seq_is_at_the_limit_keeps_running(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """A forged event left the agent's last seq at 2**63-1: a fresh agent is welcomed with it,
    does not crash, and its events are still acked."""
    async with world(redis_url, database_url, tmp_path) as w:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        state = LiveState(
            tenant=w.tenant, agent_id=w.agent_id, online=False, last_seen=datetime.now(UTC), last_seq=MAX_SEQ
        )
        await client.hset(keys.live_hash(w.tenant), w.agent_id, encode(state))
        await client.aclose()
        spool = Spool.in_dir(tmp_path / "agent")
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        try:
            session.emit(StatePayload(state="present"))
            await asyncio.wait_for(session.wait_acked(), 20)
            assert session.welcome is not None and session.welcome.last_seq == MAX_SEQ
            assert (session.acked_seq, session.connects, session.fatal) == (1, 1, None)
        finally:
            session.stop()
            await runner
        spool.close()
