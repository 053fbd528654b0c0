"""Every agent's live state of one tenant, read at once from the gateways' live hash in Redis.

What ``telework admin agent list`` and the console's devices pages show as last seen, online
and agent version (of the newest session's hello). :func:`states_of` (pure) keeps, of the raw
hash, the readable states of that tenant's agents under their own id; anything else in the
hash (unreadable, another agent's) has no live state. :func:`tenant_states` reads the whole hash,
:func:`agents_states` only the fields of some agents (a page of a list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from realtime import keys
from realtime.protocol import LiveState, ProtocolError, parse_record


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def states_of(raw: Mapping[str | bytes, str | bytes], tenant: str) -> dict[str, LiveState]:
    """Pure: ``{agent_id: its live state}`` of the raw live hash of ``tenant``."""
    out: dict[str, LiveState] = {}
    for field, value in raw.items():
        try:
            live: LiveState = parse_record(value, LiveState)
        except ProtocolError:
            continue  # not a live state: no last seen for it
        if (live.tenant, live.agent_id) == (tenant, _text(field)):
            out[live.agent_id] = live
    return out


async def tenant_states(redis: aioredis.Redis, tenant: str) -> dict[str, LiveState]:
    """The live states of ``tenant``'s agents (RedisError/OSError when Redis does not answer)."""
    raw = await redis.hgetall(keys.live_hash(tenant))
    return states_of(raw, tenant)


async def agents_states(redis: aioredis.Redis, tenant: str, agent_ids: Sequence[str]) -> dict[str, LiveState]:
    """The live states of those of ``agent_ids`` that have one (RedisError/OSError when Redis does
    not answer)."""
    if not agent_ids:
        return {}
    values = await redis.hmget(keys.live_hash(tenant), list(agent_ids))
    return states_of({a: v for a, v in zip(agent_ids, values, strict=True) if v is not None}, tenant)
