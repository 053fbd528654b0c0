"""The ``stored`` watermark and the stream's capacity, as one gateway sees them.

An ``ack`` tells an agent its events are in the event store (Redis, an XADD returned); it
moves the agent's flow-control window. A ``stored`` frame tells it they are committed in the
database, and only then may it free them from its spool. The gateway learns that from the
persistence group's position in the tenant's stream (:func:`realtime.stream_positions.done_below`:
the persistence worker acks an entry only after its commit): every frame a session stored,
remembered as (its last entry id, its highest seq) in the session's :class:`StoredTracker`, is
reported once the group is done below that id.

:class:`StoredReporter` polls, every ``stored_poll_s``, the streams of the tenants with open
sessions (pipelined: XINFO GROUPS and XLEN of each, XPENDING where a group has pending
entries), sends the ``stored`` frames, and keeps the per-tenant *full* flag: a stream
holding ``stream_maxlen`` entries or more is at capacity (its consumers are behind), and the
gateway then refuses new events with ``store_full`` (the agent keeps them and retries) instead of
letting Redis grow without bound or trimming what no one has read.

Pure: :class:`StoredTracker`. I/O: :class:`StoredReporter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import RedisError

from realtime import keys
from realtime.protocol import EventsStored, WireModel
from realtime.stream_positions import done_below, find, id_before, read_many_positions

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
ERROR_LOG_EVERY_S = 30.0


@dataclass
class StoredTracker:
    """Frames of one session that are in the event store and not yet reported stored. Pure."""

    frames: deque[tuple[str, int]] = field(default_factory=deque)  # (last entry id, highest seq)
    reported: int = 0

    def added(self, entry_id: str, seq: int) -> None:
        self.frames.append((entry_id, seq))

    def release(self, bound: str | None) -> int | None:
        """Forget the frames whose last entry is below ``bound``; the seq to report, if it grew."""
        if bound is None:
            return None
        highest = 0
        while self.frames and id_before(self.frames[0][0], bound):
            highest = max(highest, self.frames.popleft()[1])
        if highest <= self.reported:
            return None
        self.reported = highest
        return highest


class Watched(Protocol):
    """What the reporter needs of an open session."""

    stored: StoredTracker

    async def send(self, frame: WireModel) -> None: ...


class StoredReporter:
    """Reports ``stored`` to the sessions of one gateway and tracks which tenant streams are full."""

    def __init__(
        self,
        redis: Any,
        sessions: Callable[[], Mapping[str, Iterable[Watched]]],
        poll_s: float,
        capacity: int,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.poll_s = poll_s
        self.capacity = capacity
        self.lengths: dict[str, int] = {}
        self.reports = 0
        self._full: set[str] = set()
        self._error_logged = 0.0

    def is_full(self, tenant: str) -> bool:
        return tenant in self._full

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; Redis errors are logged (at most every 30 s) and retried."""
        while not stop.is_set():
            try:
                await self.poll()
            except (RedisError, OSError) as exc:
                now = time.monotonic()
                if now - self._error_logged >= ERROR_LOG_EVERY_S:
                    self._error_logged = now
                    log.warning("stored watermark not read; retrying", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)

    async def poll(self) -> None:
        """One look at every open tenant's stream; ``stored`` frames to the sessions it releases."""
        by_tenant = {tenant: list(conns) for tenant, conns in self.sessions().items()}
        # and the tenants marked full: their agents are refused before a session opens, so only
        # this look can see the stream fall below its capacity again
        tenants = sorted({t for t, conns in by_tenant.items() if conns} | self._full)
        if not tenants:
            return
        streams = [keys.events_stream(tenant) for tenant in tenants]
        positions, failed = await read_many_positions(self.redis, streams)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xlen(stream)
            lengths = await pipe.execute(raise_on_error=False)
        sends = []
        for tenant, stream, length in zip(tenants, streams, lengths, strict=True):
            if stream in failed:
                log.error("event stream unreadable", extra={"stream": stream, "error": str(failed[stream])})
                continue
            self._set_length(tenant, 0 if isinstance(length, BaseException) else int(length))
            persist = find(positions[stream], keys.PERSIST_GROUP)
            bound = None if persist is None else done_below(persist)
            for conn in by_tenant.get(tenant, ()):
                seq = conn.stored.release(bound)
                if seq is not None:
                    sends.append(asyncio.wait_for(conn.send(EventsStored(seq=seq)), SEND_TIMEOUT_S))
        if sends:
            results = await asyncio.gather(*sends, return_exceptions=True)
            self.reports += sum(1 for r in results if not isinstance(r, BaseException))

    def _set_length(self, tenant: str, length: int) -> None:
        self.lengths[tenant] = length
        full = length >= self.capacity
        if full and tenant not in self._full:
            self._full.add(tenant)
            log.error(
                "event stream at capacity: refusing new events until the consumers catch up",
                extra={"tenant": tenant, "length": length, "capacity": self.capacity},
            )
        elif not full and tenant in self._full:
            self._full.discard(tenant)
            log.warning(
                "event stream below capacity again: accepting events",
                extra={"tenant": tenant, "length": length, "capacity": self.capacity},
            )
