"""The Redis side of the stream consumer (:mod:`workers.consumer`): one consumer group, as commands.

Each function is one conversation with Redis about ``group`` on a tenant stream and
returns values (:class:`~workers.handling.Entry` with its delivery count); the consumer
decides what to do with them. :func:`stream_entries` is pure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import ResponseError

from workers.consumer_names import stale_consumers
from workers.dead_letter import text_of
from workers.handling import Entry

log = logging.getLogger(__name__)

# KEYS[1] stream; ARGV group, consumer, idle ms: DELCONSUMER only if it is still idle that long
# with nothing pending (checked and done in one step: a consumer that just read entries keeps them).
DELETE_IF_STALE = """
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == ARGV[2] then
    if tonumber(fields['pending']) == 0 and tonumber(fields['idle']) > tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
"""


def stream_entries(response: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """XREADGROUP reply (RESP2 list or RESP3 dict) as ``[(stream, [(id, fields), ...])]``."""
    if not response:
        return []
    items = response.items() if isinstance(response, dict) else response
    out = []
    for stream, entries in items:
        if len(entries) == 1 and isinstance(entries[0], list):
            entries = entries[0]  # RESP3: {stream: [[(id, fields), ...]]}
        out.append((text_of(stream), list(entries)))
    return out


async def create_group(redis: Any, stream: str, group: str) -> None:
    """The group on ``stream`` from ID 0 (the stream created when missing); already there is fine."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def read_new(
    redis: Any, group: str, name: str, streams: Sequence[str], count: int, block_ms: int
) -> list[Entry]:
    """One XREADGROUP ``>`` over ``streams`` (each entry's first delivery)."""
    response = await redis.xreadgroup(group, name, dict.fromkeys(streams, ">"), count=count, block=block_ms)
    return [
        Entry(stream, text_of(entry_id), fields or {}, 1)
        for stream, entries in stream_entries(response)
        for entry_id, fields in entries
    ]


async def read_own_pending(
    redis: Any, group: str, name: str, stream: str, after: str, count: int
) -> list[Entry]:
    """Up to ``count`` of ``name``'s own pending entries of ``stream`` after ID ``after`` (history read)."""
    response = await redis.xreadgroup(group, name, {stream: after}, count=count)
    found = [e for _, entries in stream_entries(response) for e in entries]
    ids = [text_of(entry_id) for entry_id, _ in found]
    counts = await delivery_counts(redis, stream, group, ids)
    return [
        Entry(stream, i, fields or {}, counts.get(i, 1)) for i, (_, fields) in zip(ids, found, strict=True)
    ]


async def autoclaim(
    redis: Any, group: str, name: str, stream: str, min_idle_ms: int, cursor: str, count: int
) -> tuple[str, list[Entry]]:
    """One XAUTOCLAIM step: the next cursor, the entries claimed (and those deleted from the stream,
    with no fields and 0 deliveries: they go to the dead-letter stream)."""
    reply = await redis.xautoclaim(
        stream, group, name, min_idle_time=min_idle_ms, start_id=cursor, count=count
    )
    claimed = [(text_of(i), fields or {}) for i, fields in reply[1] if i is not None]
    deleted = [text_of(i) for i in reply[2]] if len(reply) > 2 else []
    counts = await delivery_counts(redis, stream, group, [i for i, _ in claimed])
    batch = [Entry(stream, i, f, counts.get(i, 1)) for i, f in claimed]
    batch += [Entry(stream, i, {}, 0) for i in deleted]
    return text_of(reply[0]), batch


async def delivery_counts(redis: Any, stream: str, group: str, ids: Sequence[str]) -> dict[str, int]:
    """How many times each pending entry has been delivered (XPENDING, one per id, pipelined)."""
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id in ids:
            pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        replies = await pipe.execute()
    counts: dict[str, int] = {}
    for reply in replies:
        for item in reply:
            counts[text_of(item["message_id"])] = int(item["times_delivered"])
    return counts


async def ack(redis: Any, group: str, entries: Sequence[Entry]) -> None:
    """XACK handled entries, one XACK per stream."""
    by_stream: dict[str, list[str]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.entry_id)
    if not by_stream:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for stream, ids in by_stream.items():
            pipe.xack(stream, group, *ids)
        await pipe.execute()


async def delete_stale(redis: Any, stream: str, group: str, me: str, stale_ms: float) -> list[str]:
    """XGROUP DELCONSUMER the consumers idle past ``stale_ms`` with nothing pending (never ``me``).

    Returns the names deleted. One with pending entries stays until XAUTOCLAIM has taken them.
    """
    infos: Sequence[Mapping[str, Any]] = await redis.xinfo_consumers(stream, group)
    deleted = []
    for name in stale_consumers(infos, me, stale_ms):
        if await redis.eval(DELETE_IF_STALE, 1, stream, group, name, int(stale_ms)):
            deleted.append(name)
    return deleted
