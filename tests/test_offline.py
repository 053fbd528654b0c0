"""Offline operation end to end: spool -> real gateway (stopped, restarted) -> Redis -> worker -> DB."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis

from agent.spool import Spool
from realtime import keys
from realtime.protocol import PresenceState, StatePayload, StreamEvent, TaskPayload, parse_record
from storage.db import make_engine
from storage.evidence_store import open_store
from tests.agent_world import FAST, World, world
from tests.waiting import wait_until

# a recent morning: the gateway accepts event times within 30 days of its clock
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
STATES: tuple[PresenceState, ...] = ("present", "away", "present", "peeking", "present")


def offline_image(i: int) -> bytes:
    return hashlib.sha256(f"img{i}".encode()).digest() * 40  # 1,280 bytes, distinct per i


async def stream_order(redis_url: str, tenant: str) -> list[tuple[str, int]]:
    """(event id, seq) of every stream entry in arrival order, duplicates included."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: list[tuple[str, dict[str, str]]] = await client.xrange(keys.events_stream(tenant))  # type: ignore[assignment]
    finally:
        await client.aclose()
    out = []
    for _id, fields in entries:
        entry: StreamEvent = parse_record(fields[keys.ENTRY_FIELD], StreamEvent)
        out.append((str(entry.event.id), entry.event.seq))
    return out


def decrypted(w: World, shas: list[str]) -> list[bytes]:
    engine = make_engine(w.database_url)
    try:
        store = open_store(w.settings, engine)
        return [store.get(w.tenant, sha) for sha in shas]
    finally:
        engine.dispose()


async def test_gateway_restarted_mid_flush_stores_every_event_once_in_order(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """6,000 offline events + 30 images; the gateway stops mid-flush, returns: all stored once, in order."""
    total = 6000
    async with world(redis_url, database_url, tmp_path, start=False) as w:
        spool = Spool.in_dir(tmp_path / "agent")
        session = w.session(spool, replace(FAST, batch_max=50, window=100))
        emitted = [
            session.emit(StatePayload(state=STATES[i % len(STATES)]), ts=T0 + timedelta(seconds=3 * i))
            for i in range(total)
        ]
        images = [offline_image(i) for i in range(30)]
        shas = [session.add_evidence(img, "camera", "periodic", T0).sha256 for img in images]
        cut = asyncio.Event()

        def on_ack(seq: int) -> None:
            if seq >= 1000 and not cut.is_set():
                w.gateway.request_stop()  # at once, in the ack's own callback: the flush is mid-way
                cut.set()

        session.on_ack = on_ack
        runner = asyncio.create_task(session.run())
        try:
            await w.gateway.start()
            await asyncio.wait_for(cut.wait(), 30)
            await w.gateway.stop()  # mid-flush
            assert 1000 <= session.acked_seq < total
            attempts = session.attempts
            await wait_until(lambda: session.attempts >= attempts + 2, 20, what="reconnects refused")
            emitted.append(session.emit(TaskPayload(task="while the gateway is down")))
            await w.gateway.start()
            await asyncio.wait_for(session.wait_stored(), 60)
            await asyncio.wait_for(session.wait_uploaded(), 60)
            await wait_until(lambda: w.count() >= total + 1, 60, what="every event persisted")
        finally:
            session.stop()
            await runner
        rows = w.events()
        assert [(r.id, r.seq) for r in rows] == [(str(e.id), e.seq) for e in emitted]
        assert [r.seq for r in rows] == list(range(1, total + 2))
        arrivals = await stream_order(redis_url, w.tenant)
        first_seen: dict[str, int] = {}
        for event_id, seq in arrivals:
            first_seen.setdefault(event_id, seq)
        assert list(first_seen.values()) == list(range(1, total + 2))  # the server received them in order
        assert (spool.pending_count(), spool.image_count()) == (0, 0)
        assert decrypted(w, shas) == images
        spool.close()


async def test_agent_crash_and_restart_continue_numbering_and_lose_nothing(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """An agent killed with 200 unsent events restarts from its spool: numbering goes on, all stored once."""
    async with world(redis_url, database_url, tmp_path, start=False) as w:
        crashed = w.session(Spool.in_dir(tmp_path / "agent"))
        before = [crashed.emit(StatePayload(state=STATES[i % 5])) for i in range(200)]
        # crash: the process is gone, nothing closed; the next agent process opens the same file
        spool = Spool.in_dir(tmp_path / "agent")
        session = w.session(spool)
        assert (session.last_seq, session.acked_seq) == (200, 0)
        after = [session.emit(StatePayload(state="away"))]
        assert after[0].seq == 201
        runner = asyncio.create_task(session.run())
        try:
            await w.gateway.start()
            await asyncio.wait_for(session.wait_stored(), 30)
            assert w.count() == 201
        finally:
            session.stop()
            await runner
        assert [(r.id, r.seq) for r in w.events()] == [(str(e.id), e.seq) for e in before + after]
        assert (spool.pending_count(), spool.acked) == (0, 201)
        spool.close()


async def test_six_hundred_offline_images_keep_five_hundred_and_report_the_gap(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """600 images offline: 500 kept (periodic dropped first), a gap of 100 stored, then the count resets."""
    async with world(redis_url, database_url, tmp_path, start=False) as w:
        spool = Spool.in_dir(tmp_path / "agent", capacity=500)
        session = w.session(spool)
        incident = set(range(0, 600, 12))  # 50 incident images among 550 periodic
        shas = [
            session.add_evidence(
                offline_image(i),
                "screen",
                "incident" if i in incident else "periodic",
                T0 + timedelta(minutes=i),
            ).sha256
            for i in range(600)
        ]
        kept = {i.sha256 for i in spool.images()}
        periodic = [i for i in range(600) if i not in incident]
        assert (len(kept), spool.overwritten) == (500, 100)
        assert kept == {shas[i] for i in incident} | {shas[i] for i in periodic[100:]}
        session.emit(StatePayload(state="present"))
        runner = asyncio.create_task(session.run())
        try:
            await w.gateway.start()
            await wait_until(lambda: session.stored_seq >= 2, 30, what="gap event stored")
            assert w.count() == 2
        finally:
            session.stop()
            await runner
        rows = w.events()
        assert [(r.seq, r.type, r.payload) for r in rows][1] == (2, "gap", {"images_overwritten": 100})
        assert (spool.overwritten, spool.gap_in_flight) == (0, None)
        spool.close()
