"""Current state of every agent, kept in Redis for live views.

Layout: the hash :func:`realtime.keys.live_hash` maps ``agent_id`` to the
:class:`~realtime.protocol.LiveState` JSON of that agent, and every change is
published, as the same JSON, on :func:`realtime.keys.live_channel`. Readers
decode both with ``protocol.parse_record(raw, LiveState)``.

The state transitions are pure (:func:`fold`, :func:`went_online`,
:func:`went_offline`); the I/O helpers only read the previous value, and write
and publish the new one.

Each state names the session that owns it (``session_id``, the agent's newest
session, on whichever gateway). Writes are compare-and-set Lua scripts
(:mod:`realtime.live_scripts`): :func:`mark_online` takes the state over; only
the owner may then write it (:func:`write` for event-driven changes,
:func:`refresh` for a heartbeat, :func:`mark_offline`), so a replaced session
can neither mark its agent offline nor overwrite the newer session's state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime import keys, live_scripts
from realtime.batcher import BatcherStopped, Command, WriteBatcher
from realtime.protocol import (
    DutyEvent,
    Event,
    LiveRemoved,
    LiveState,
    ProtocolError,
    StateEvent,
    TaskEvent,
    encode,
    parse_record,
)

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 10  # a session opening retries taking the state over this often


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
    tenant: str,
    agent_id: str,
    user: str | None,
    now: datetime,
    previous: LiveState | None,
    session_id: str | None = None,
    agent_version: str | None = None,
) -> LiveState:
    """The live state of an agent whose session ``session_id`` (of an agent at ``agent_version``)
    just opened (and owns it); keeps its previous state."""
    opened = {
        "user": user,
        "online": True,
        "last_seen": now,
        "session_id": session_id,
        "agent_version": agent_version,
    }
    if previous is None:
        return LiveState.model_validate({"tenant": tenant, "agent_id": agent_id, **opened})
    return previous.model_copy(update=opened)


def went_offline(live: LiveState, now: datetime) -> LiveState:
    """The live state of an agent whose session ended or went silent."""
    return live.model_copy(update={"online": False, "last_seen": now})


# ------------------------------------------------------------------------- I/O


def removal(tenant: str, agent_id: str, at: datetime) -> list[Command]:
    """The commands that delete an agent's live state and tell live views to drop its row."""
    gone = encode(LiveRemoved(tenant=tenant, agent_id=agent_id, at=at))
    return [("HDEL", keys.live_hash(tenant), agent_id), ("PUBLISH", keys.live_channel(tenant), gone)]


def write(live: LiveState) -> Command:
    """The command that stores and publishes ``live`` if its session still owns the state."""
    session = live.session_id or ""
    return live_scripts.owner_write(live.tenant, live.agent_id, session, encode(live))


def refresh(believed: LiveState, live: LiveState) -> Command:
    """The command that stores ``live`` (a heartbeat's newer ``last_seen``) if its session still
    owns the state, publishing it only when the stored state is not ``believed``."""
    session = live.session_id or ""
    return live_scripts.owner_write(live.tenant, live.agent_id, session, encode(live), encode(believed))


def parse_stored(raw: str | bytes | None, tenant: str, agent_id: str) -> LiveState | None:
    """A stored live state; None when absent, unreadable or another agent's (logged)."""
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


async def load(redis: aioredis.Redis, tenant: str, agent_id: str) -> LiveState | None:
    """The stored live state of an agent; None when absent or unreadable (logged)."""
    return parse_stored(await redis.hget(keys.live_hash(tenant), agent_id), tenant, agent_id)


class LiveStateContended(RedisError):
    """The live state changed under every attempt to take it over (a storm of sessions of one agent)."""


async def mark_online(
    redis: aioredis.Redis,
    tenant: str,
    agent_id: str,
    user: str | None,
    now: datetime,
    session_id: str | None = None,
    agent_version: str | None = None,
) -> LiveState:
    """Record session ``session_id`` opening: SADD the tenant to TENANTS, then take the state over
    (store and publish online=True owned by the session), a compare-and-set on the value read,
    retried when another write came between."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(keys.TENANTS, tenant)
        pipe.hget(keys.live_hash(tenant), agent_id)
        _added, raw = await pipe.execute()
    for attempt in range(CLAIM_ATTEMPTS):
        if attempt > 0:
            raw = await redis.hget(keys.live_hash(tenant), agent_id)
        previous = parse_stored(raw, tenant, agent_id)
        live = went_online(tenant, agent_id, user, now, previous, session_id, agent_version)
        if await redis.execute_command(*live_scripts.compare_and_set(tenant, agent_id, raw, encode(live))):
            return live
    raise LiveStateContended(
        f"live state of {tenant}/{agent_id}: expected to take it over within {CLAIM_ATTEMPTS} attempts; "
        "it changed under every one"
    )


async def mark_offline(
    redis: aioredis.Redis, live: LiveState, now: datetime, writer: WriteBatcher | None = None
) -> LiveState | None:
    """Record a session ending: store and publish online=False if the session still owns the
    state; None when a newer session owns it (nothing written). Through ``writer``'s shared
    pipeline when given (directly once it is stopping)."""
    offline = went_offline(live, now)
    command = write(offline)
    done = None
    if writer is not None:
        with contextlib.suppress(BatcherStopped):  # stopping: written directly below
            (done,) = await writer.submit([command])
    if done is None:
        done = await redis.execute_command(*command)
    return offline if done != live_scripts.NOT_OWNER else None
