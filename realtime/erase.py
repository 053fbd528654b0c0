"""A person's erasure, in Redis: their agents' events, dead letters and live states.

``telework admin erase-user`` erases the database first, then calls :func:`erase_agents` with
the user's agents (read before the erasure unlinks them) to remove, in the tenant's keys:

* every entry of the event stream whose ``agent_id`` is one of them (XRANGE in pages, then, per
  page and in one MULTI, XACK in every consumer group and XDEL): an entry still pending is acked
  before it disappears, so no consumer ever meets it as a deleted entry and turns it into a
  dead letter; one not yet delivered is never delivered;
* every dead letter whose failed entry names one of them (parsed, or for an entry that does not
  parse, its text mentioning ``"agent_id": "<agent>"``);
* their fields of the live hash (HDEL), each followed by a PUBLISH on the live channel of the
  agent's state with the person taken out (no user, state, duty or task; offline), so open live
  pages drop the person at once (a page loaded afterwards does not see the agent at all).

An event a worker has already read and is committing while this runs can still reach the
database; the agents keep sending unless they are revoked (``telework admin agent revoke``).

Pure: :func:`entry_agent`, :func:`letter_agent`, :func:`scrubbed`. I/O: :func:`erase_agents`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import ResponseError

from realtime import keys
from realtime.protocol import LiveState, ProtocolError, encode, parse_record
from realtime.stream_positions import next_id

log = logging.getLogger(__name__)

PAGE = 1000  # entries read per XRANGE
_AGENT_ID = re.compile(r'"agent_id"\s*:\s*"([^"\\]*)"')


@dataclass(frozen=True)
class RedisErasure:
    """What :func:`erase_agents` removed from Redis."""

    events: int = 0  # event stream entries deleted
    dead_letters: int = 0  # dead letters deleted
    live_states: int = 0  # live hash fields deleted

    def counts(self) -> dict[str, int]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _agent_in(text: str) -> str | None:
    """``agent_id`` of a StreamEvent JSON text; for text that is not JSON, the first mention."""
    try:
        data = json.loads(text)
    except ValueError:
        found = _AGENT_ID.search(text)
        return found.group(1) if found else None
    agent = data.get("agent_id") if isinstance(data, dict) else None
    return agent if isinstance(agent, str) else None


def entry_agent(fields: Mapping[Any, Any]) -> str | None:
    """The agent an event stream entry is about (its ``e`` field's ``agent_id``); None: cannot tell."""
    texts = {_text(k): _text(v) for k, v in fields.items()}
    raw = texts.get(keys.ENTRY_FIELD)
    return None if raw is None else _agent_in(raw)


def letter_agent(fields: Mapping[Any, Any]) -> str | None:
    """The agent a dead letter's failed entry is about; None: cannot tell (e.g. it had no fields)."""
    raw = {_text(k): _text(v) for k, v in fields.items()}.get(keys.ENTRY_FIELD)
    if raw is None:
        return None
    try:
        letter = json.loads(raw)
    except ValueError:
        found = _AGENT_ID.search(raw.replace('\\"', '"'))
        return found.group(1) if found else None
    inner = letter.get("fields") if isinstance(letter, dict) else None
    if not isinstance(inner, dict):
        return None
    return entry_agent({k: v for k, v in inner.items() if isinstance(v, str)})


def scrubbed(live: LiveState | None, tenant: str, agent_id: str, now: datetime) -> LiveState:
    """The state published for an erased agent: offline, without the person or what they did."""
    return LiveState(
        tenant=tenant,
        agent_id=agent_id,
        online=False,
        last_seen=max(live.last_seen, now) if live is not None else now,
        last_seq=live.last_seq if live is not None else 0,
    )


async def _groups(redis: Any, stream: str) -> list[str]:
    try:
        return [_text(g.get("name", g.get(b"name"))) for g in await redis.xinfo_groups(stream)]
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise


async def _delete_entries(
    redis: Any,
    stream: str,
    doomed: Callable[[Mapping[Any, Any]], bool],
    page: int,
    acked_in: Collection[str] = (),
) -> int:
    """XRANGE ``stream`` in pages up to its newest entry at the start; XACK (in every group of
    ``acked_in``) and XDEL the entries ``doomed(fields)`` picks, a page in one MULTI."""
    newest = await redis.xrevrange(stream, count=1)
    if not newest:
        return 0
    end = _text(newest[0][0])
    deleted, start = 0, "-"
    while True:
        entries = await redis.xrange(stream, min=start, max=end, count=page)
        if not entries:
            return deleted
        ids = [_text(entry_id) for entry_id, fields in entries if doomed(fields or {})]
        if ids:
            async with redis.pipeline(transaction=True) as pipe:
                for group in acked_in:
                    pipe.xack(stream, group, *ids)
                pipe.xdel(stream, *ids)
                replies = await pipe.execute()
            deleted += int(replies[-1])
        if len(entries) < page:
            return deleted
        start = next_id(_text(entries[-1][0]))


async def erase_agents(
    redis: Any, tenant: str, agents: Collection[str], now: datetime, page: int = PAGE
) -> RedisErasure:
    """Remove ``agents``' events, dead letters and live states from ``tenant``'s Redis keys."""
    wanted = frozenset(agents)
    if not wanted:
        return RedisErasure()
    stream = keys.events_stream(tenant)
    events = await _delete_entries(
        redis, stream, lambda f: entry_agent(f) in wanted, page, await _groups(redis, stream)
    )
    letters = await _delete_entries(
        redis, keys.dead_letter_stream(tenant), lambda f: letter_agent(f) in wanted, page
    )
    ordered = sorted(wanted)
    held = await redis.hmget(keys.live_hash(tenant), ordered)
    live_states = 0
    async with redis.pipeline(transaction=True) as pipe:
        for agent_id, raw in zip(ordered, held, strict=True):
            if raw is None:
                continue
            try:
                live: LiveState | None = parse_record(raw, LiveState)
            except ProtocolError:
                live = None
            pipe.hdel(keys.live_hash(tenant), agent_id)
            pipe.publish(keys.live_channel(tenant), encode(scrubbed(live, tenant, agent_id, now)))
            live_states += 1
        if live_states:
            await pipe.execute()
    erased = RedisErasure(events, letters, live_states)
    log.info("erased agents from redis", extra={"tenant": tenant, "agents": len(wanted), **erased.counts()})
    return erased
