"""Current state of every agent, kept in Redis for live views.

Layout: the hash :func:`realtime.keys.live_hash` maps ``agent_id`` to the
:class:`~realtime.protocol.LiveState` JSON of that agent, and every change is
published, as the same JSON, on :func:`realtime.keys.live_channel`. Readers
decode both with ``protocol.parse_record(raw, LiveState)``.

The state transitions are pure (:func:`fold`, :func:`went_online`,
:func:`went_offline`); the I/O helpers only read the previous value, and write
and publish the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from realtime import keys
from realtime.protocol import (
    DutyEvent,
    Event,
    LiveState,
    ProtocolError,
    StateEvent,
    TaskEvent,
    encode,
    parse_record,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------- pure


def fold(live: LiveState, events: Sequence[Event], now: datetime | None = None) -> LiveState:
    """Apply a batch of events to an agent's live state.

    Events are applied in sequence order; an event whose ``seq`` is not above
    ``live.last_seq`` (a replay from an offline spool) is ignored. ``last_seen``
    becomes ``now`` when given, else the newest applied event's timestamp.
    Returns ``live`` itself when no event applies.
    """
    changes: dict[str, Any] = {}
    last_seq = live.last_seq
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq <= last_seq:
            continue
        last_seq = event.seq
        if isinstance(event, StateEvent):
            if event.payload.state != changes.get("state", live.state):
                changes["since"] = event.ts
            changes["state"] = event.payload.state
        elif isinstance(event, DutyEvent):
            changes["on_duty"] = event.payload.on_duty
        elif isinstance(event, TaskEvent):
            changes["task"] = event.payload.task
        changes["last_event_id"] = event.id
        changes["last_seq"] = event.seq
        changes["last_seen"] = event.ts
    if not changes:
        return live
    if now is not None:
        changes["last_seen"] = now
    return live.model_copy(update=changes)


def went_online(
    tenant: str, agent_id: str, user: str | None, now: datetime, previous: LiveState | None
) -> LiveState:
    """The live state of an agent whose session just opened; keeps its previous state."""
    if previous is None:
        return LiveState(tenant=tenant, agent_id=agent_id, user=user, online=True, last_seen=now)
    return previous.model_copy(update={"user": user, "online": True, "last_seen": now})


def went_offline(live: LiveState, now: datetime) -> LiveState:
    """The live state of an agent whose session ended or went silent."""
    return live.model_copy(update={"online": False, "last_seen": now})


# ------------------------------------------------------------------------- I/O


def commands(live: LiveState) -> list[tuple[str, ...]]:
    """The Redis commands that store ``live`` in the tenant's hash and publish it."""
    data = encode(live)
    return [
        ("HSET", keys.live_hash(live.tenant), live.agent_id, data),
        ("PUBLISH", keys.live_channel(live.tenant), data),
    ]


def stage(pipe: Any, live: LiveState) -> None:
    """Queue the HSET and PUBLISH of ``live`` on a redis pipeline (or client)."""
    for command in commands(live):
        pipe.execute_command(*command)


async def load(redis: aioredis.Redis, tenant: str, agent_id: str) -> LiveState | None:
    """The stored live state of an agent; None when absent or unreadable (logged)."""
    raw = await redis.hget(keys.live_hash(tenant), agent_id)
    if raw is None:
        return None
    try:
        live: LiveState = parse_record(raw, LiveState)
    except ProtocolError as err:
        log.warning(
            "unreadable live state replaced",
            extra={"tenant": tenant, "agent_id": agent_id, "error": err.message},
        )
        return None
    if live.tenant != tenant or live.agent_id != agent_id:
        log.warning(
            "live state of another agent replaced",
            extra={"tenant": tenant, "agent_id": agent_id, "found": f"{live.tenant}/{live.agent_id}"},
        )
        return None
    return live


async def mark_online(
    redis: aioredis.Redis, tenant: str, agent_id: str, user: str | None, now: datetime
) -> LiveState:
    """Record a session opening: SADD the tenant to TENANTS, store and publish online=True."""
    live = went_online(tenant, agent_id, user, now, await load(redis, tenant, agent_id))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(keys.TENANTS, tenant)
        stage(pipe, live)
        await pipe.execute()
    return live


async def mark_offline(redis: aioredis.Redis, live: LiveState, now: datetime) -> LiveState:
    """Record a session ending: store and publish online=False."""
    offline = went_offline(live, now)
    async with redis.pipeline(transaction=False) as pipe:
        stage(pipe, offline)
        await pipe.execute()
    return offline
