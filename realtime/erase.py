"""A person's erasure, in Redis: their agents' events, dead letters and live states.

The keys are declared in :data:`storage.personal_registry.REDIS`. ``telework admin erase-user``
(:mod:`telework.erase_user`) revokes the agents, waits until their sessions are closed
(:func:`wait_offline`), calls :func:`erase_agents` before and again after the database erasure,
and then has Redis rewrite its append-only file (:func:`rewrite_files`), which still held the
erased commands. :func:`erase_agents` removes, in the tenant's keys:

* every entry of the event stream whose ``agent_id`` is one of them (XRANGE in pages, then, per
  page and in one MULTI, XACK in every consumer group and XDEL): an entry still pending is acked
  before it disappears, so no consumer ever meets it as a deleted entry and turns it into a
  dead letter; one not yet delivered is never delivered;
* every dead letter whose failed entry names one of them (parsed, or for an entry that does not
  parse, its text mentioning ``"agent_id": "<agent>"``);
* their fields of the live hash, with a ``LiveRemoved`` on the live channel for each
  (:func:`realtime.live.removal`), so open live pages drop the agent's row at once (a page loaded
  afterwards does not see the agent at all).

Pure: :func:`entry_agent`, :func:`letter_agent`, :func:`still_online`.
I/O: :func:`erase_agents` (and :func:`agents_data`, the same for an export), :func:`wait_offline`,
:func:`rewrite_files`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import ResponseError

from realtime import keys
from realtime.live import removal
from realtime.protocol import LiveState, ProtocolError, parse_record
from realtime.stream_positions import next_id

log = logging.getLogger(__name__)

PAGE = 1000  # entries read per XRANGE
POLL_S = 0.1  # how often wait_offline and rewrite_files look again
_AGENT_ID = re.compile(r'"agent_id"\s*:\s*"([^"\\]*)"')


@dataclass(frozen=True)
class RedisErasure:
    """What :func:`erase_agents` removed from Redis."""

    events: int = 0  # event stream entries deleted
    dead_letters: int = 0  # dead letters deleted
    live_states: int = 0  # live hash fields deleted

    def counts(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: RedisErasure) -> RedisErasure:
        return RedisErasure(
            self.events + other.events,
            self.dead_letters + other.dead_letters,
            self.live_states + other.live_states,
        )


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


async def _groups(redis: Any, stream: str) -> list[str]:
    try:
        return [_text(g.get("name", g.get(b"name"))) for g in await redis.xinfo_groups(stream)]
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return []
        raise


async def _pages(
    redis: Any, stream: str, pick: Callable[[Mapping[Any, Any]], bool], page: int
) -> AsyncIterator[list[tuple[str, Mapping[Any, Any]]]]:
    """XRANGE ``stream`` in pages up to its newest entry at the start; per page, the entries
    ``pick(fields)`` chooses (pages without any are skipped)."""
    newest = await redis.xrevrange(stream, count=1)
    if not newest:
        return
    end, start = _text(newest[0][0]), "-"
    while True:
        entries = await redis.xrange(stream, min=start, max=end, count=page)
        if not entries:
            return
        chosen = [(_text(entry_id), fields or {}) for entry_id, fields in entries if pick(fields or {})]
        if chosen:
            yield chosen
        if len(entries) < page:
            return
        start = next_id(_text(entries[-1][0]))


async def _delete_entries(
    redis: Any,
    stream: str,
    doomed: Callable[[Mapping[Any, Any]], bool],
    page: int,
    acked_in: Collection[str] = (),
) -> int:
    """XACK (in every group of ``acked_in``) and XDEL the entries ``doomed(fields)`` picks, a page
    in one MULTI."""
    deleted = 0
    async for chosen in _pages(redis, stream, doomed, page):
        ids = [entry_id for entry_id, _fields in chosen]
        async with redis.pipeline(transaction=True) as pipe:
            for group in acked_in:
                pipe.xack(stream, group, *ids)
            pipe.xdel(stream, *ids)
            replies = await pipe.execute()
        deleted += int(replies[-1])
    return deleted


async def agents_data(
    redis: Any, tenant: str, agents: Collection[str], page: int = PAGE
) -> dict[str, list[dict[str, Any]]]:
    """For an export: what :func:`erase_agents` would remove, per key (entries as their texts)."""
    wanted = frozenset(agents)
    out: dict[str, list[dict[str, Any]]] = {}
    picks: list[tuple[str, Callable[[Mapping[Any, Any]], bool]]] = [
        (keys.events_stream(tenant), lambda f: entry_agent(f) in wanted),
        (keys.dead_letter_stream(tenant), lambda f: letter_agent(f) in wanted),
    ]
    for stream, pick in picks:
        out[stream] = [
            {"id": entry_id, **{_text(k): _text(v) for k, v in fields.items()}}
            async for chosen in _pages(redis, stream, pick, page)
            for entry_id, fields in chosen
        ] if wanted else []  # fmt: skip
    ordered = sorted(wanted)
    held = await redis.hmget(keys.live_hash(tenant), ordered) if ordered else []
    out[keys.live_hash(tenant)] = [
        {"agent_id": agent_id, "state": _text(raw)}
        for agent_id, raw in zip(ordered, held, strict=True)
        if raw
    ]
    return out


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
            for command in removal(tenant, agent_id, now):
                pipe.execute_command(*command)
            live_states += 1
        if live_states:
            await pipe.execute()
    erased = RedisErasure(events, letters, live_states)
    log.info("erased agents from redis", extra={"tenant": tenant, "agents": len(wanted), **erased.counts()})
    return erased


def still_online(agents: Collection[str], held: Collection[Any]) -> list[str]:
    """Pure: the agents (in order) whose live state (raw JSON or None, same order) says online."""
    online: list[str] = []
    for agent_id, raw in zip(agents, held, strict=True):
        if raw is None:
            continue
        try:
            if parse_record(raw, LiveState).online:
                online.append(agent_id)
        except ProtocolError:
            continue
    return online


async def wait_offline(redis: Any, tenant: str, agents: Collection[str], timeout_s: float) -> list[str]:
    """Wait until no live state of ``agents`` says online (their sessions ended); those still online
    after ``timeout_s`` (a gateway that stopped without marking them offline)."""
    ordered = sorted(agents)
    deadline = time.monotonic() + timeout_s
    while True:
        online = still_online(ordered, await redis.hmget(keys.live_hash(tenant), ordered)) if ordered else []
        if not online or time.monotonic() >= deadline:
            return online
        await asyncio.sleep(POLL_S)


async def rewrite_files(redis: Any, timeout_s: float = 60.0) -> str:
    """Have Redis rewrite its append-only file from the data it now holds; what was done, in words.

    The AOF keeps every command since its last rewrite, the erased XADDs and HSETs too; a rewrite
    writes only what is left. Waits until the rewrite ended (at most ``timeout_s``).
    """
    info = await redis.info("persistence")
    if not int(info.get("aof_enabled", 0)):
        return "no append-only file"
    deadline = time.monotonic() + timeout_s
    if not await _rewrite_done(redis, deadline):  # one that began before the erasure holds its data
        return f"append-only file rewrite still running after {timeout_s:g} s"
    await redis.bgrewriteaof()
    if not await _rewrite_done(redis, deadline):
        return f"append-only file rewrite still running after {timeout_s:g} s"
    status = _text((await redis.info("persistence")).get("aof_last_bgrewrite_status", "ok"))
    return "append-only file rewritten" if status == "ok" else f"append-only file rewrite: {status}"


async def _rewrite_done(redis: Any, deadline: float) -> bool:
    while True:
        info = await redis.info("persistence")
        if not (int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0))):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
