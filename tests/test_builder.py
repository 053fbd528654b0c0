"""The builder end to end: Redis stream entries (real Redis) -> interval and incident rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from core.settings import ServerSettings
from realtime import keys, live
from realtime.protocol import (
    DutyEvent,
    DutyPayload,
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    StreamEvent,
    TaskEvent,
    TaskPayload,
    encode,
    new_event_id,
)
from storage.accounts import create_agent, create_tenant, create_user
from storage.activity import Incident, Interval
from tests.test_worker import running
from tests.waiting import wait_until
from workers.builder import build_consumer, is_silent, plan_work
from workers.intervals_store import ROLLUP_DIRTY

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
SHA = "ab" * 32


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Agent:
    """Makes stream entries of one agent, numbering its events."""

    def __init__(self, tenant: str, agent_id: str) -> None:
        self.tenant, self.agent_id, self.seq = tenant, agent_id, 0

    def entry(self, minute: float, payload: Any) -> dict[str, str]:
        self.seq += 1
        common = {"id": new_event_id(), "seq": self.seq, "ts": at(minute), "payload": payload}
        kinds: dict[type, Any] = {
            StatePayload: StateEvent,
            DutyPayload: DutyEvent,
            TaskPayload: TaskEvent,
            IncidentPayload: IncidentEvent,
        }
        kind = kinds[type(payload)]
        stream_event = StreamEvent(
            tenant=self.tenant,
            agent_id=self.agent_id,
            session_id="s1",
            received_at=datetime.now(UTC),
            event=kind(**common),
        )
        return {keys.ENTRY_FIELD: encode(stream_event)}


async def produce(client: aioredis.Redis, tenant: str, entries: list[dict[str, str]]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(keys.events_stream(tenant), fields)  # type: ignore[arg-type]
        pipe.sadd(keys.TENANTS, tenant)
        await pipe.execute()


def settings_for(redis_url: str, database_url: str, tmp_path: Path, **extra: object) -> ServerSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "data_dir": tmp_path,
        "worker_name": "b1",
        "worker_block_ms": 20,
        "tenant_refresh_s": 0.05,
        "incident_merge_s": 60.0,
    }
    values.update(extra)
    return ServerSettings.model_validate(values)


def intervals(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Interval.__table__).order_by("started_at", "kind")  # type: ignore[attr-defined]
        ).all()
    return [
        (
            r.kind,
            r.value,
            (r.started_at.replace(tzinfo=UTC) - T0).total_seconds() / 60,
            None if r.ended_at is None else (r.ended_at.replace(tzinfo=UTC) - T0).total_seconds() / 60,
            r.closed_by,
            r.user_id,
        )
        for r in rows
    ]


def incidents(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Incident.__table__).order_by("id")).all()  # type: ignore[attr-defined]
    return [
        (
            r.id,
            r.kind,
            (r.started_at.replace(tzinfo=UTC) - T0).total_seconds() / 60,
            None if r.ended_at is None else (r.ended_at.replace(tzinfo=UTC) - T0).total_seconds() / 60,
            r.evidence,
            len(r.source_event_ids),
            r.review_status,
            r.comment,
        )
        for r in rows
    ]


def setup_accounts(engine: Engine) -> int:
    create_tenant(engine, "acme", "Acme")
    user_id = create_user(engine, "acme", "bob", "Bob")
    create_agent(engine, "acme", "pc-1", "bob")
    return user_id


async def test_stream_entries_become_intervals_with_late_and_duplicate_delivery(
    redis_url: str, aredis: aioredis.Redis, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A day's entries, a duplicate, and a morning spool arriving last: exactly the in-order intervals."""
    user = setup_accounts(engine)
    pc = Agent("acme", "pc-1")
    morning = [
        pc.entry(0, DutyPayload(on_duty=True, verified=True)),
        pc.entry(0, StatePayload(state="present")),
        pc.entry(5, TaskPayload(task="coding")),
        pc.entry(60, StatePayload(state="away")),  # offline spool: delivered last
        pc.entry(75, StatePayload(state="present")),
    ]
    afternoon = [
        pc.entry(120, StatePayload(state="present")),  # repeat: merged
        pc.entry(130, TaskPayload(task="email")),
        pc.entry(240, DutyPayload(on_duty=False, verified=True)),
    ]
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    worker = build_consumer(settings_for(redis_url, database_url, tmp_path), engine, client)
    try:
        async with running(worker):
            await produce(aredis, "acme", morning[:3] + afternoon + [afternoon[1]])
            await wait_until(
                lambda: (
                    intervals(engine)
                    == [
                        ("duty", "on", 0, 240, "event", user),
                        ("presence", "present", 0, 240, "event", user),
                        ("task", "coding", 5, 130, "event", user),
                        ("task", "email", 130, 240, "event", user),
                    ]
                ),
                what="intervals of the day without the spool",
            )
            await produce(aredis, "acme", morning[3:])
            expected = [
                ("duty", "on", 0, 240, "event", user),
                ("presence", "present", 0, 60, "event", user),
                ("task", "coding", 5, 130, "event", user),
                ("presence", "away", 60, 75, "event", user),
                ("presence", "present", 75, 240, "event", user),
                ("task", "email", 130, 240, "event", user),
            ]
            await wait_until(lambda: intervals(engine) == expected, what="intervals with the late spool")

            async def all_acked() -> bool:  # XACK follows the commit
                pending = await aredis.xpending(keys.events_stream("acme"), "build")
                return bool(pending["pending"] == 0)

            await wait_until(all_acked, what="every entry acked after its commit")
    finally:
        await client.aclose()
    assert intervals(engine) == expected
    with engine.connect() as conn:  # every rebuild told the rollup worker where its window began
        marks = conn.execute(select(ROLLUP_DIRTY.c.user_id, ROLLUP_DIRTY.c.since)).all()
    assert {u for u, _ in marks} == {user}
    assert min(since.replace(tzinfo=UTC) for _, since in marks) == T0


async def test_incidents_merge_and_keep_their_review_when_late_events_extend_them(
    redis_url: str, aredis: aioredis.Redis, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Peeking episodes 30 s apart are one incident; a reviewed incident extended late keeps id and review."""
    setup_accounts(engine)
    pc = Agent("acme", "pc-1")
    first = [
        pc.entry(10, IncidentPayload(kind="peeking", phase="start", evidence=[SHA])),
        pc.entry(10.5, IncidentPayload(kind="peeking", phase="end")),
        pc.entry(11, IncidentPayload(kind="peeking", phase="start")),
        pc.entry(11.5, IncidentPayload(kind="peeking", phase="end")),
        pc.entry(30, IncidentPayload(kind="camera_blocked", phase="start")),
    ]
    late = [
        pc.entry(12, IncidentPayload(kind="peeking", phase="start", evidence=["cd" * 32])),
        pc.entry(12.5, IncidentPayload(kind="peeking", phase="end")),
        pc.entry(20, IncidentPayload(kind="peeking", phase="start")),
        pc.entry(20.5, IncidentPayload(kind="peeking", phase="end")),
    ]
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    worker = build_consumer(settings_for(redis_url, database_url, tmp_path), engine, client)
    try:
        async with running(worker):
            await produce(aredis, "acme", first)
            await wait_until(
                lambda: (
                    incidents(engine)
                    == [
                        (1, "peeking", 10, 11.5, [SHA], 4, "unreviewed", None),
                        (2, "camera_blocked", 30, None, [], 1, "unreviewed", None),
                    ]
                ),
                what="two incidents",
            )
            with engine.begin() as conn:
                conn.execute(
                    update(Incident.__table__)  # type: ignore[attr-defined]
                    .where(Incident.__table__.c.id == 1)  # type: ignore[attr-defined]
                    .values(review_status="confirmed", comment="a colleague")
                )
            await produce(aredis, "acme", late)
            await wait_until(
                lambda: (
                    incidents(engine)
                    == [
                        (1, "peeking", 10, 12.5, [SHA, "cd" * 32], 6, "confirmed", "a colleague"),
                        (2, "camera_blocked", 30, None, [], 1, "unreviewed", None),
                        (3, "peeking", 20, 20.5, [], 2, "unreviewed", None),
                    ]
                ),
                what="extended reviewed incident and a separate one",
            )
    finally:
        await client.aclose()


async def test_silent_agents_are_closed_at_their_last_event_and_live_ones_left_open(
    redis_url: str, aredis: aioredis.Redis, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Start-up reconciliation: a silent agent's open intervals end at its last event; a live one's stay."""
    setup_accounts(engine)
    create_agent(engine, "acme", "pc-2", "bob")
    pc1, pc2 = Agent("acme", "pc-1"), Agent("acme", "pc-2")
    entries = [
        pc1.entry(0, DutyPayload(on_duty=True)),
        pc1.entry(30, StatePayload(state="present")),
        pc1.entry(45, TaskPayload(task="coding")),
        pc2.entry(0, DutyPayload(on_duty=True)),
        pc2.entry(40, StatePayload(state="away")),
    ]
    await live.mark_online(aredis, "acme", "pc-2", "Bob", datetime.now(UTC))
    settings = settings_for(redis_url, database_url, tmp_path, builder_silence_s=60.0)
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        async with running(build_consumer(settings, engine, client)):
            await produce(aredis, "acme", entries)
            await wait_until(lambda: len(intervals(engine)) == 5, what="five open intervals")
        assert [i[:5] for i in intervals(engine)] == [
            ("duty", "on", 0, None, None),
            ("duty", "on", 0, None, None),
            ("presence", "present", 30, None, None),
            ("presence", "away", 40, None, None),
            ("task", "coding", 45, None, None),
        ]
        async with running(build_consumer(settings, engine, client)) as worker:  # a restart
            await wait_until(lambda: worker.handler.stats.silent_closed == 1, what="silence pass")
    finally:
        await client.aclose()
    with engine.connect() as conn:
        rows = conn.execute(
            select(Interval.__table__).order_by("agent_id", "kind")  # type: ignore[attr-defined]
        ).all()
    ends = [None if r.ended_at is None else r.ended_at.replace(tzinfo=UTC) for r in rows]
    assert [(r.agent_id, r.kind, end, r.closed_by) for r, end in zip(rows, ends, strict=True)] == [
        ("pc-1", "duty", at(45), "silence"),  # the task began at the last event: zero length, dropped
        ("pc-1", "presence", at(45), "silence"),
        ("pc-2", "duty", None, None),
        ("pc-2", "presence", None, None),
    ]


def test_plan_work_and_is_silent() -> None:
    """plan_work groups a batch by agent (earliest event, earliest incident per kind); is_silent's rule."""
    pc = Agent("acme", "pc-1")
    entries = [
        StreamEvent.model_validate_json(e[keys.ENTRY_FIELD])
        for e in (
            pc.entry(5, StatePayload(state="away")),
            pc.entry(3, IncidentPayload(kind="peeking", phase="start")),
            pc.entry(1, StatePayload(state="present")),
        )
    ]
    (work,) = plan_work(entries)
    assert (work.tenant, work.agent, work.earliest, work.incidents) == (
        "acme",
        "pc-1",
        at(1),
        (("peeking", at(3)),),
    )
    now = at(100)
    online = live.went_online("acme", "pc-1", None, at(0), None)
    assert not is_silent(online, at(0), now, 120)
    assert is_silent(live.went_offline(online, at(10)), at(5), now, 120)
    assert not is_silent(live.went_offline(online, at(99)), at(5), now, 120)
    assert is_silent(None, at(30), now, 120) and not is_silent(None, at(99), now, 120)
