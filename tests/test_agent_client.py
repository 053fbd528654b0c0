"""The agent's session client: backoff, outbox, simulation script, and AgentSession on a real gateway."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agent.backoff import next_delay
from agent.client import AgentSession
from agent.outbox import Outbox, events_frame
from agent.session_parts import SessionOptions, is_fatal_close, with_seq
from agent.simulate import day_script, run_simulation
from core.settings import ServerSettings, sqlite_url
from realtime import keys
from realtime.protocol import (
    AgentSettings,
    DutyPayload,
    Events,
    IncidentPayload,
    StatePayload,
    StreamEvent,
    TaskPayload,
    parse_agent_frame,
    parse_record,
)
from realtime.tenant_settings import publish_settings
from storage.accounts import create_agent, create_tenant, create_user, revoke_agent
from storage.db import make_engine, upgrade
from tests.servers import RestartableGateway
from tests.waiting import wait_until

FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.5, open_timeout_s=5)

# ------------------------------------------------------------------------- pure


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    """The delay is rand * base * 2**attempt."""
    assert next_delay(0, 0.5, 30.0, 0.5) == 0.25
    assert next_delay(1, 0.5, 30.0, 0.5) == 0.5
    assert next_delay(3, 0.5, 30.0, 0.5) == 2.0
    assert next_delay(3, 0.5, 30.0, 0.0) == 0.0


def test_backoff_is_capped_even_for_huge_attempts() -> None:
    """Past the cap the ceiling stays at cap, with no overflow."""
    assert next_delay(6, 0.5, 30.0, 0.5) == 15.0
    assert next_delay(10_000, 0.5, 30.0, 0.5) == 15.0


def test_backoff_rejects_bad_arguments_with_clear_messages() -> None:
    """Bad inputs raise ValueError saying what was expected."""
    with pytest.raises(ValueError, match=r"^rand: expected a number in \[0, 1\), got 1.0$"):
        next_delay(0, 0.5, 30.0, 1.0)
    with pytest.raises(ValueError, match=r"^attempt: expected >= 0, got -1$"):
        next_delay(-1, 0.5, 30.0, 0.1)
    with pytest.raises(ValueError, match=r"^expected 0 < base <= cap, got base=2.0 cap=1.0$"):
        next_delay(0, 2.0, 1.0, 0.1)


def _fill(box: Outbox, n: int) -> None:
    for _ in range(n):
        seq = box.take_seq()
        box.push(seq, f'{{"seq":{seq}}}')


def test_outbox_batches_in_order_and_acks_cumulatively() -> None:
    """Seqs start at 1; batches respect max_events; an ack moves the window, only `stored` drops events."""
    box = Outbox()
    _fill(box, 5)
    assert [p.seq for p in box.next_batch(2, 10_000, 100)] == [1, 2]
    assert [p.seq for p in box.next_batch(2, 10_000, 100)] == [3, 4]
    box.ack(3)
    assert (len(box), box.acked, box.stored, box.in_flight, box.unsent) == (5, 3, 0, 1, 1)
    assert box.release(2) == 2
    assert (len(box), box.acked, box.stored, box.in_flight) == (3, 3, 2, 1)
    assert [p.seq for p in box.next_batch(10, 10_000, 100)] == [5]
    assert box.next_batch(10, 10_000, 100) == []
    assert box.release(9) == 3  # a watermark past the last event releases what there is
    assert (len(box), box.acked, box.stored) == (0, 5, 5)


def test_outbox_rewind_resends_every_event_not_stored_in_order() -> None:
    """After a reconnect every event the database does not hold is due again, acked or not."""
    box = Outbox()
    _fill(box, 6)
    box.next_batch(10, 10_000, 100)
    box.ack(4)
    box.release(2)
    box.rewind()
    assert (box.acked, box.in_flight) == (2, 0)
    assert [p.seq for p in box.next_batch(10, 10_000, 100)] == [3, 4, 5, 6]


def test_outbox_respects_window_and_frame_size() -> None:
    """No more than `window` unacked in flight; a frame stays within max_bytes (but holds >= 1 event)."""
    box = Outbox()
    _fill(box, 10)
    assert [p.seq for p in box.next_batch(100, 10_000, 3)] == [1, 2, 3]
    assert box.next_batch(100, 10_000, 3) == []
    box.release(1)
    assert [p.seq for p in box.next_batch(100, 10_000, 3)] == [4]
    assert [p.seq for p in box.next_batch(100, 1, 100)] == [5]  # one event even if too big
    frame_of_two = len(events_frame(box.next_batch(2, 10_000, 100)))
    box.rewind()
    box.next_batch(4, 10_000, 100)  # re-send up to 5
    assert [p.seq for p in box.next_batch(100, frame_of_two, 100)] == [6, 7]


def test_outbox_frame_is_a_valid_events_frame() -> None:
    """events_frame builds the same JSON the protocol parses as an Events frame."""
    session = AgentSession("ws://127.0.0.1:1/v1/agent", "t")
    session.emit(StatePayload(state="present"))
    session.emit(DutyPayload(on_duty=True))
    frame = parse_agent_frame(events_frame(session.outbox.next_batch(10, 100_000, 100)))
    assert isinstance(frame, Events)
    assert [(e.seq, e.type) for e in frame.events] == [(1, "state"), (2, "duty")]
    assert frame.events[0].id.version == 7 and frame.events[0].ts.utcoffset() is not None


def test_fatal_close_codes() -> None:
    """1008 (token) and 1002 (version) are fatal; other closes are retried."""
    assert [is_fatal_close(c) for c in (1008, 1002, 1000, 1001, 1006, 1011, 1012, None)] == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]


def test_day_script_is_a_plausible_working_day() -> None:
    """A day opens and closes duty, has tasks, and every incident start has its end."""
    for seed in range(20):
        day = day_script(random.Random(seed))
        assert day[0] == DutyPayload(on_duty=True, verified=True)
        assert day[-1] == DutyPayload(on_duty=False, verified=True)
        assert any(isinstance(p, TaskPayload) and p.task for p in day)
        incidents = [p.phase for p in day if isinstance(p, IncidentPayload)]
        assert incidents == ["start", "end"] * (len(incidents) // 2)
    assert any(any(isinstance(p, IncidentPayload) for p in day_script(random.Random(s))) for s in range(20))


# ---------------------------------------------------------------- real gateway


class World:
    def __init__(
        self, gateway: RestartableGateway, tenant: str, agent_id: str, token: str, database_url: str
    ) -> None:
        self.gateway, self.tenant, self.agent_id, self.token = gateway, tenant, agent_id, token
        self.database_url = database_url


@asynccontextmanager
async def world(redis_url: str, tmp_path: Path, **overrides: object) -> AsyncIterator[World]:
    database_url = sqlite_url(tmp_path)
    engine = make_engine(database_url)
    tenant, agent_id = f"t{uuid.uuid4().hex[:12]}", f"pc-{uuid.uuid4().hex[:8]}"
    try:
        upgrade(engine)
        create_tenant(engine, tenant, "Test tenant")
        create_user(engine, tenant, "alice", "Alice")
        token = create_agent(engine, tenant, agent_id, "alice")
    finally:
        engine.dispose()
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "redis_url": redis_url,
        "database_url": database_url,
        "gateway_port": 0,
        "auth_cache_s": 0,
        **overrides,
    }
    settings = ServerSettings(**values)
    gateway = RestartableGateway(settings)
    await gateway.start()
    try:
        yield World(gateway, tenant, agent_id, token, database_url)
    finally:
        await gateway.stop()


async def stream_records(redis: aioredis.Redis, tenant: str) -> list[StreamEvent]:
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.events_stream(tenant))  # type: ignore[assignment]
    return [parse_record(fields[keys.ENTRY_FIELD], StreamEvent) for _id, fields in entries]


async def stream_seqs(redis: aioredis.Redis, tenant: str, agent_id: str) -> list[int]:
    return [r.event.seq for r in await stream_records(redis, tenant) if r.agent_id == agent_id]


@asynccontextmanager
async def running(session: AgentSession) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        session.stop()
        await asyncio.wait_for(task, 15)


async def test_session_events_are_acked_and_in_the_stream(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """450 events go out in frames of <= 200, are all acked, and appear in the stream in seq order."""
    async with world(redis_url, tmp_path) as w:
        session = AgentSession(w.gateway.url, w.token, FAST)
        async with running(session):
            for i in range(450):
                session.emit(StatePayload(state="present" if i % 2 else "away"))
            async with asyncio.timeout(15):
                await session.wait_acked()
            # no persistence worker runs here: acked (in Redis), never stored, so all kept
            assert (session.acked_seq, session.stored_seq, len(session.outbox)) == (450, 0, 450)
            assert session.connects == 1
            assert session.welcome is not None and session.welcome.agent_id == w.agent_id
        assert await stream_seqs(aredis, w.tenant, w.agent_id) == list(range(1, 451))


async def test_frames_fit_the_limit_the_gateway_announces(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A gateway taking at most 8 KiB frames says so in its welcome: 300 events arrive in small
    frames on one connection, never closed 1009."""
    async with world(redis_url, tmp_path, max_frame_bytes=8192) as w:
        session = AgentSession(w.gateway.url, w.token, FAST)
        async with running(session):
            for _ in range(300):
                session.emit(StatePayload(state="present"))
            async with asyncio.timeout(15):
                await session.wait_acked()
            assert (session.acked_seq, session.connects, session.last_close_code) == (300, 1, None)
            assert session.welcome is not None and session.welcome.max_frame_bytes == 8192
        assert await stream_seqs(aredis, w.tenant, w.agent_id) == list(range(1, 301))


async def three_events_acked(w: World) -> None:
    first = AgentSession(w.gateway.url, w.token, FAST)
    async with running(first):
        for _ in range(3):
            first.emit(StatePayload(state="present"))
        async with asyncio.timeout(15):
            await first.wait_acked()


async def test_an_agent_without_a_spool_continues_the_numbering_after_a_restart(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A spool-less agent restarted (a new process, nothing queued) continues after the server's last
    seq from its welcome, so its new events are never taken for repeats of old ones."""
    async with world(redis_url, tmp_path) as w:
        await three_events_acked(w)  # an earlier run of the agent, then it is gone
        again = AgentSession(w.gateway.url, w.token, FAST)
        async with running(again):
            await wait_until(again.connected.is_set, 15, what="welcomed")
            assert again.emit(StatePayload(state="away")).seq == 4
            async with asyncio.timeout(15):
                await again.wait_acked()
        assert await stream_seqs(aredis, w.tenant, w.agent_id) == [1, 2, 3, 4]


async def test_events_queued_before_the_first_welcome_are_numbered_after_the_servers_last_seq(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A spool-less agent restarted that queues events before its first welcome (the simulator's duty
    event): they are renumbered after the server's last seq, never sent as repeats of seqs 1, 2."""
    async with world(redis_url, tmp_path) as w:
        await three_events_acked(w)  # an earlier run of the agent, then it is gone
        again = AgentSession(w.gateway.url, w.token, FAST)
        queued = [again.emit(StatePayload(state=s)) for s in ("away", "present")]  # before any welcome
        assert [e.seq for e in queued] == [1, 2]
        async with running(again):
            async with asyncio.timeout(15):
                await again.wait_acked(5)
        assert await stream_seqs(aredis, w.tenant, w.agent_id) == [1, 2, 3, 4, 5]
        records = await stream_records(aredis, w.tenant)
        assert [r.event.id for r in records[3:]] == [e.id for e in queued]  # the same events, as 4 and 5


def test_renumbering_only_a_fresh_queue_that_starts_below() -> None:
    """Outbox.renumber: the queue is renumbered from first_seq with each text restamped; not once
    anything was acked, nor when the queue already starts there."""
    box = Outbox()
    for text in ('{"seq":1}', '{"seq":2}'):
        box.push(box.take_seq(), text)
    assert box.renumber(1, with_seq) == 0
    assert box.renumber(7, with_seq) == 2
    assert [(p.seq, p.text) for p in box.next_batch(10, 10_000, 10)] == [(7, '{"seq":7}'), (8, '{"seq":8}')]
    assert (box.next_seq, box.take_seq()) == (9, 9)
    box.ack(7)
    assert box.renumber(20, with_seq) == 0


async def test_session_reconnects_after_gateway_restart_and_resends(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """Gateway stopped and restarted on its port: the agent reconnects, every event arrives, in seq order."""
    async with world(redis_url, tmp_path) as w:
        session = AgentSession(w.gateway.url, w.token, FAST)
        async with running(session):
            for _ in range(100):
                session.emit(StatePayload(state="present"))
            async with asyncio.timeout(15):
                await session.wait_acked()
            await w.gateway.stop()
            await wait_until(lambda: not session.connected.is_set(), 15, what="session dropped")
            for _ in range(150):
                session.emit(StatePayload(state="away"))  # queued while the gateway is down
            await w.gateway.start()
            async with asyncio.timeout(20):
                await session.wait_acked()
            assert (session.acked_seq, session.stored_seq, session.connects) == (250, 0, 2)
        seqs = await stream_seqs(aredis, w.tenant, w.agent_id)
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == list(range(1, 251))


async def test_bad_token_stops_the_session_without_retrying(redis_url: str, tmp_path: Path) -> None:
    """Close 1008 for an unknown token: run() returns at once with the reason; no reconnect loop."""
    async with world(redis_url, tmp_path) as w:
        session = AgentSession(w.gateway.url, "twa_not-a-real-token", FAST)
        async with asyncio.timeout(10):
            await session.run()
        assert (session.attempts, session.connects) == (1, 0)
        assert session.fatal is not None and session.fatal.startswith("gateway closed the session with 1008")


async def test_unreachable_gateway_is_retried_until_stopped() -> None:
    """Nothing listening: the session keeps retrying with backoff; stop() ends run() promptly, not fatal."""
    from telework.up import free_port

    session = AgentSession(f"ws://127.0.0.1:{free_port()}/v1/agent", "t", FAST)
    task = asyncio.create_task(session.run())
    await wait_until(lambda: session.attempts >= 3, 10, what="three connection attempts")
    session.stop()
    await asyncio.wait_for(task, 2)
    assert (session.connects, session.fatal) == (0, None)


async def test_revoked_token_ends_a_running_simulation(redis_url: str, tmp_path: Path) -> None:
    """A revoked agent is refused at its next connect; run_simulation ends when every agent is refused."""
    async with world(redis_url, tmp_path) as w:
        engine = make_engine(w.database_url)
        revoke_agent(engine, w.agent_id)
        engine.dispose()
        stop = asyncio.Event()
        async with asyncio.timeout(10):
            sessions = await run_simulation(w.gateway.url, {w.agent_id: w.token}, 50.0, stop, FAST, seed=1)
        assert [s.fatal is not None and "1008" in s.fatal for s in sessions] == [True]


async def test_simulation_sends_scripted_days(redis_url: str, aredis: aioredis.Redis, tmp_path: Path) -> None:
    """run_simulation's events reach the stream, seq 1..n with no gap, starting with duty on."""
    async with world(redis_url, tmp_path) as w:
        stop = asyncio.Event()
        sim = asyncio.create_task(run_simulation(w.gateway.url, [w.token], 200.0, stop, FAST, seed=7))

        async def enough() -> bool:
            return len(await stream_seqs(aredis, w.tenant, w.agent_id)) >= 30

        await wait_until(enough, 15, what="30 simulated events in the stream")
        stop.set()
        (session,) = await asyncio.wait_for(sim, 15)
        assert session.acked_seq == session.last_seq
        assert await stream_seqs(aredis, w.tenant, w.agent_id) == list(range(1, session.last_seq + 1))
        first = (await stream_records(aredis, w.tenant))[0]
        assert first.event.type == "duty"


async def test_settings_push_replaces_settings_live(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A settings frame pushed by the gateway replaces the session's settings without a reconnect."""
    async with world(redis_url, tmp_path) as w:
        session = AgentSession(w.gateway.url, w.token, FAST)
        async with running(session):
            await wait_until(session.connected.is_set, 15, what="connected")
            assert session.settings == AgentSettings()
            pushed = AgentSettings(threshold_level=5, heartbeat_interval_s=1.0)
            await publish_settings(aredis, w.tenant, pushed)
            await wait_until(lambda: session.settings == pushed, 10, what="settings pushed")
            assert session.connects == 1
