"""Where every consumer group of a tenant's event stream stands, and what that makes safe.

An entry is *done* for a group once the group has acknowledged it (the persistence worker
acks only after its database commit; a dead-lettered entry is acked with its letter written).
A group's done region is everything below its first pending entry, or, with nothing pending,
everything up to its last delivered entry. Two things are derived from it, here and nowhere else:

* the **stored watermark** the gateway reports to agents: the ``persist`` group's done region
  (:func:`done_below` of that group);
* the **trim point** of a stream: below what *every* consumer group is done with, and only when
  the groups the deployment needs exist (:func:`trim_point`); trimming below it never drops an
  entry a consumer still needs.

Pure: :class:`GroupPosition` and the functions on entry ids. I/O: :func:`read_positions`, and
:func:`read_many_positions` for many streams in a fixed number of round trips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

StreamId = tuple[int, int]  # (milliseconds, sequence)


def parse_id(entry_id: str | bytes) -> StreamId:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; ValueError naming what arrived otherwise."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, sep, seq = text.partition("-")
    try:
        return int(ms), int(seq) if sep else 0
    except ValueError:
        raise ValueError(f"expected a stream entry id like 1700000000000-0, got {text!r}") from None


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def next_id(entry_id: str) -> str:
    """The smallest entry id above ``entry_id``."""
    ms, seq = parse_id(entry_id)
    return format_id((ms, seq + 1))


def id_before(entry_id: str, bound: str) -> bool:
    """``entry_id`` sorts below ``bound``."""
    return parse_id(entry_id) < parse_id(bound)


@dataclass(frozen=True)
class GroupPosition:
    """One consumer group of a stream: its last delivered entry and its oldest pending one."""

    name: str
    last_delivered: str
    first_pending: str | None = None
    pending: int = 0


def done_below(group: GroupPosition) -> str:
    """The exclusive bound of the group's done region: every entry id below it is acknowledged."""
    if group.first_pending is not None:
        return group.first_pending
    return next_id(group.last_delivered)


def find(positions: Iterable[GroupPosition], name: str) -> GroupPosition | None:
    return next((p for p in positions if p.name == name), None)


def trim_point(positions: Sequence[GroupPosition], required: Iterable[str]) -> str | None:
    """The id below which every group is done (``XTRIM MINID`` may drop what is below it).

    None while a required group does not exist yet (its consumers never started: everything
    is still theirs to read) or when the stream has no group at all.
    """
    names = {p.name for p in positions}
    if not positions or any(name not in names for name in required):
        return None
    return format_id(min(parse_id(done_below(p)) for p in positions))


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _field(info: dict[Any, Any], name: str) -> Any:
    return info.get(name, info.get(name.encode()))


def _missing(reply: object) -> bool:
    return isinstance(reply, ResponseError) and "no such key" in str(reply).lower()


async def read_many_positions(
    redis: Any, streams: Sequence[str]
) -> tuple[dict[str, list[GroupPosition]], dict[str, ResponseError]]:
    """Every group of each stream with its position, in two pipelined round trips whatever the
    number of streams (XINFO GROUPS of each, then XPENDING of the groups with pending entries).

    Returns the positions by stream ([] for a stream that does not exist) and, apart, the streams
    Redis refused to describe (e.g. a key of another type) with the error.
    """
    if not streams:
        return {}, {}
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xinfo_groups(stream)
        replies = await pipe.execute(raise_on_error=False)
    found: dict[str, list[tuple[str, str, int]]] = {}
    failed: dict[str, ResponseError] = {}
    for stream, reply in zip(streams, replies, strict=True):
        if _missing(reply):
            found[stream] = []
        elif isinstance(reply, ResponseError):
            failed[stream] = reply
        else:
            found[stream] = [
                (_text(_field(g, "name")), _text(_field(g, "last-delivered-id")), int(_field(g, "pending")))
                for g in reply
            ]
    busy = [(stream, name) for stream, infos in found.items() for name, _, pending in infos if pending]
    first: dict[tuple[str, str], str | None] = {}
    if busy:
        async with redis.pipeline(transaction=False) as pipe:
            for stream, name in busy:
                pipe.xpending(stream, name)
            pending_replies = await pipe.execute()
        for key, reply in zip(busy, pending_replies, strict=True):
            low = _field(reply, "min") if isinstance(reply, dict) else None
            first[key] = None if low is None else _text(low)
    positions = {
        stream: [GroupPosition(name, last, first.get((stream, name)), n) for name, last, n in infos]
        for stream, infos in found.items()
    }
    return positions, failed


async def read_positions(redis: Any, stream: str) -> list[GroupPosition]:
    """Every group of ``stream`` with its position (XINFO GROUPS, then XPENDING for those with
    pending entries, pipelined); [] when the stream does not exist."""
    found, failed = await read_many_positions(redis, [stream])
    if stream in failed:
        raise failed[stream]
    return found[stream]
