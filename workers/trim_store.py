"""The trim pass on Redis: the I/O partner of :mod:`workers.trim` (which decides).

:class:`StreamTrimmer` is the persistence consumer's periodic hook ``trim``
(:func:`workers.persist.persist_consumer`): for every tenant of ``SMEMBERS tw:tenants`` it reads
the event stream (XINFO STREAM, then the groups' positions), trims it as
:func:`workers.trim.decide` says, warns at high water, trims the dead-letter stream by age and
warns when it holds too many letters. The clock is the Redis server's (``TIME``), the one its
entry ids count in.

A Redis refusal on one tenant's keys is logged and the pass goes on with the next tenant; a lost
connection ends the pass (the consumer retries it at its next interval).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ResponseError

from realtime import keys
from realtime.stream_positions import read_many_positions
from workers.trim import (
    DEAD_LETTER_WARN_EVERY_S,
    WARN_EVERY_S,
    StreamReading,
    TrimPolicy,
    TrimReport,
    dead_letter_backlog,
    dead_letter_minid,
    decide,
    warn_due,
)

log = logging.getLogger(__name__)

TRIM_LIMIT = 100_000  # entries one approximate XTRIM call may remove (Redis' default is 10,000)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _missing(reply: object) -> bool:
    return isinstance(reply, ResponseError) and "no such key" in str(reply).lower()


async def redis_now(redis: Any) -> datetime:
    """The Redis server's clock (``TIME``), which stream entry ids count in."""
    seconds, micros = await redis.time()
    return datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, UTC)


def _reading(stream: str, info: Any, positions: list[Any]) -> StreamReading:
    first = info.get("first-entry")
    return StreamReading(
        stream=stream,
        length=int(info["length"]),
        first_id=_text(first[0]) if first and first[0] is not None else None,
        last_id=_text(info.get("last-generated-id") or "0-0"),
        positions=tuple(positions),
    )


async def xtrim_minid(redis: Any, stream: str, minid: str, approximate: bool) -> int:
    """``XTRIM stream MINID [~] minid``; approximate calls are repeated until one removes nothing."""
    if not approximate:
        return int(await redis.xtrim(stream, minid=minid, approximate=False))
    total = 0
    while True:
        removed = int(await redis.xtrim(stream, minid=minid, approximate=True, limit=TRIM_LIMIT))
        total += removed
        if removed < TRIM_LIMIT // 2:  # a call that hit the limit removed close to it: go on
            return total


class StreamTrimmer:
    """One worker's trim pass over every tenant's event and dead-letter streams (see the module doc).

    A pass takes a fixed number of pipelined round trips whatever the number of tenants (it holds
    up the worker's consumer while it runs): XINFO STREAM of each event stream with the dead-letter
    XTRIM and XLEN; the groups' positions (:func:`~realtime.stream_positions.read_many_positions`);
    then the XTRIMs that :func:`~workers.trim.decide` asks for.
    """

    def __init__(self, policy: TrimPolicy, redis: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.redis = redis
        self.clock = clock
        self._warned: dict[str, float] = {}
        self.last = TrimReport()

    async def run(self) -> None:
        """The hook: one pass (its report kept in :attr:`last`)."""
        self.last = await self.trim_all()

    async def trim_all(self) -> TrimReport:
        now = await redis_now(self.redis)
        tenants = sorted(_text(t) for t in await self.redis.smembers(keys.TENANTS))
        if not tenants:
            return TrimReport()
        streams = [keys.events_stream(t) for t in tenants]
        dead = [keys.dead_letter_stream(t) for t in tenants]
        minid = dead_letter_minid(now, self.policy)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, letters in zip(streams, dead, strict=True):
                pipe.xinfo_stream(stream)
                pipe.xtrim(letters, minid=minid, approximate=False)
                pipe.xlen(letters)
            replies = await pipe.execute(raise_on_error=False)
        problems: list[str] = []
        infos: dict[str, Any] = {}
        letters_removed = 0
        for i, (stream, letters) in enumerate(zip(streams, dead, strict=True)):
            info, removed, length = replies[3 * i : 3 * i + 3]
            if isinstance(info, ResponseError) and not _missing(info):
                problems.append(f"{stream}: {info}")
            elif not isinstance(info, ResponseError):
                infos[stream] = info
            if isinstance(removed, ResponseError) or isinstance(length, ResponseError):
                problems.append(f"{letters}: {removed if isinstance(removed, ResponseError) else length}")
                continue
            letters_removed += int(removed)
            self._warn_dead_letters(letters, int(length))
        positions, failed = await read_many_positions(self.redis, list(infos))
        problems += [f"{stream}: {exc}" for stream, exc in failed.items()]
        events = 0
        for stream, group_positions in positions.items():
            decision = decide(_reading(stream, infos[stream], group_positions), now, self.policy)
            if decision.high_water is not None and self._due(stream, WARN_EVERY_S):
                log.warning(decision.high_water.text(), extra=decision.high_water.extra())
            if decision.minid is not None:
                try:
                    events += await xtrim_minid(self.redis, stream, decision.minid, decision.approximate)
                except ResponseError as exc:
                    problems.append(f"{stream}: {exc}")
        for problem in problems:
            log.error("redis refused trimming a tenant stream", extra={"problem": problem})
        report = TrimReport(events, letters_removed, len(positions), tuple(problems))
        if events or letters_removed:
            log.info(
                "trimmed tenant streams",
                extra={"events": events, "dead_letters": letters_removed, "streams": len(positions)},
            )
        return report

    def _warn_dead_letters(self, stream: str, length: int) -> None:
        backlog = dead_letter_backlog(stream, length, self.policy)
        if backlog is not None and self._due(stream, DEAD_LETTER_WARN_EVERY_S):
            log.warning(
                backlog.text(), extra={"stream": stream, "length": backlog.length, "limit": backlog.limit}
            )

    def _due(self, stream: str, every_s: float) -> bool:
        now = self.clock()
        if not warn_due(self._warned.get(stream), now, every_s):
            return False
        self._warned[stream] = now
        return True
