"""The builder: tenant event streams -> duty / presence / task intervals and incidents.

Design: a batch handler (:class:`BuildHandler`) run by the one stream consumer
(:class:`~workers.consumer.StreamConsumer`: tenant discovery, own-pending replay
at start, XAUTOCLAIM, dead letters, XACK after commit) in a consumer group of its
own (``build``) on every tenant's event stream. For each batch the builder

1. inserts-or-ignores the batch's events itself ((tenant, event id) is the primary
   key; :class:`~workers.persist.PersistHandler`'s store), so it never waits for,
   or races with, the ``persist`` group: when it builds, every event of the batch
   is in the ``event`` table;
2. per agent, rebuilds the intervals from the latest duty start at or before the
   batch's earliest event (:func:`workers.intervals.window_start`), and the
   incidents the batch's incident events can join, from the ``event`` table, in
   one transaction per agent (:mod:`workers.intervals_store`);
3. returns, and the consumer XACKs the entries after those commits. A lost
   database raises :class:`~workers.consumer.RetryLater` (the whole batch is
   handed over again: storing and rebuilding are idempotent); any other error
   while building one agent (a database error, a defect) is logged in one line and
   that agent skipped (its next batch or the silence pass rebuilds the same window);
   the process never ends for it.

Bad rows: a stored event row the builders cannot use (a time outside the protocol's
range, a payload that does not parse, see :func:`workers.intervals.event_of_row`) is
left out of every rebuild; the agent's other rows still build. Each such row is logged
once per process and counted (``rows_skipped``).

Exactly-once effect from at-least-once delivery: rows are recomputed from the
stored events, never incremented, so an entry delivered twice (claimed after a
crash, replayed) rebuilds the same rows; late and out-of-order events (offline
spools) simply widen the rebuilt window, and duplicates are ignored by the event
id. Run one builder process per deployment (several would rebuild the same agent
concurrently); a restarted builder resumes from its pending entries.

Silence (open intervals reconciled at start-up and every ``builder_reconcile_s``, as
the consumer's periodic hook ``silence``, between batches):
an agent with open intervals or incidents that is offline in the live state
(or has none) and was last seen (or last sent an event) ``builder_silence_s`` ago
has them closed at its last event (``closed_by="silence"``). An agent whose session
is live keeps them open: its states are sent on change only, so a long quiet
``present`` is real. When a silent agent's spooled events arrive later, the
rebuild reopens and continues its intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.settings import ServerSettings
from realtime import keys, live
from realtime.protocol import IncidentEvent, LiveState, StreamEvent
from workers import intervals_store
from workers.consumer import StreamConsumer
from workers.handling import Message, Periodic, PoisonEntries, RetryLater
from workers.intervals_store import SkippedRow
from workers.isolation import describe
from workers.persist import PersistHandler

log = logging.getLogger(__name__)

BUILD_GROUP = keys.BUILD_GROUP
REPORTED_ROWS_MAX = 100_000  # skipped rows remembered (each logged once per process)
# a lost database: the batch (or the hook) is retried; every other error skips one agent
DATABASE_LOST = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
T = TypeVar("T")


@dataclass(frozen=True)
class AgentWork:
    """What one batch asks of one agent: rebuild intervals from ``earliest``, incidents per kind."""

    tenant: str
    agent: str
    earliest: datetime
    incidents: tuple[tuple[str, datetime], ...] = ()


def plan_work(events: Sequence[StreamEvent]) -> list[AgentWork]:
    """Group a batch by agent: its earliest event, and its earliest incident event of each kind."""
    earliest: dict[tuple[str, str], datetime] = {}
    kinds: dict[tuple[str, str], dict[str, datetime]] = {}
    for entry in events:
        key = (entry.tenant, entry.agent_id)
        ts = entry.event.ts.astimezone(UTC)
        earliest[key] = min(ts, earliest.get(key, ts))
        if isinstance(entry.event, IncidentEvent):
            per_kind = kinds.setdefault(key, {})
            kind = entry.event.payload.kind
            per_kind[kind] = min(ts, per_kind.get(kind, ts))
    return [
        AgentWork(tenant, agent, ts, tuple(sorted(kinds.get((tenant, agent), {}).items())))
        for (tenant, agent), ts in sorted(earliest.items())
    ]


def is_silent(state: LiveState | None, last_event: datetime, now: datetime, silence_s: float) -> bool:
    """An agent is silent when not online and nothing was heard of it for ``silence_s``."""
    if state is not None and state.online:
        return False
    seen = last_event if state is None else max(last_event, state.last_seen)
    return (now - seen).total_seconds() >= silence_s


def build_agent(engine: Engine, work: AgentWork, merge_window_s: float) -> list[SkippedRow]:
    """Rebuild one agent's intervals and incidents in one transaction (blocking); the rows left out."""
    skipped: list[SkippedRow] = []
    with engine.begin() as conn:
        intervals_store.rebuild_intervals(conn, work.tenant, work.agent, work.earliest, skipped=skipped)
        if work.incidents:
            intervals_store.rebuild_incidents(
                conn, work.tenant, work.agent, dict(work.incidents), merge_window_s, skipped=skipped
            )
    return skipped


@dataclass
class BuildStats:
    agents_built: int = 0
    silent_closed: int = 0
    failed: int = 0
    rows_skipped: int = 0


class BuildSkipped(Exception):
    """An error other than a lost database: this step is skipped (already logged)."""


class BuildHandler:
    """Stores a batch's events, then rebuilds the intervals and incidents of each agent in it."""

    def __init__(self, settings: ServerSettings, engine: Engine, redis: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.persist = PersistHandler(engine)
        self.stats = BuildStats()
        self._reported: dict[tuple[str, str], None] = {}  # (tenant, event id) of rows logged as skipped

    def counts(self) -> Mapping[str, int]:
        return {**self.persist.counts(), **asdict(self.stats)}

    async def handle(self, batch: Sequence[Message]) -> None:
        rejected = await self.persist.store(batch)
        stored = [m.event for m in batch if m.entry.key not in rejected]
        for work in plan_work(stored):
            with contextlib.suppress(BuildSkipped):
                skipped = await self._database(build_agent, self.engine, work, self.settings.incident_merge_s)
                self._report(skipped)
                self.stats.agents_built += 1
        if rejected:
            raise PoisonEntries(rejected)

    def _report(self, skipped: Sequence[SkippedRow]) -> None:
        """Log and count each skipped row once per process."""
        for row in skipped:
            key = (row.tenant, row.event_id)
            if key in self._reported:
                continue
            if len(self._reported) >= REPORTED_ROWS_MAX:
                del self._reported[next(iter(self._reported))]
            self._reported[key] = None
            self.stats.rows_skipped += 1
            log.warning(
                "skipped an event row the builder cannot use",
                extra={
                    "tenant": row.tenant,
                    "agent_id": row.agent,
                    "event_id": row.event_id,
                    "reason": row.reason,
                },
            )

    async def reconcile_silence(self) -> None:
        """Close the open intervals and incidents of agents that went silent (the periodic hook)."""
        try:
            agents = await self._database(self._open_agents)
        except BuildSkipped:
            return
        now = datetime.now(UTC)
        for tenant, agent in agents:
            with contextlib.suppress(BuildSkipped):
                await self._close_if_silent(tenant, agent, now)

    async def _close_if_silent(self, tenant: str, agent: str, now: datetime) -> None:
        state = await live.load(self.redis, tenant, agent)
        last = await self._database(self._last_event, tenant, agent)
        if last is None or not is_silent(state, last, now, self.settings.builder_silence_s):
            return
        closed_at, skipped = await self._database(self._close, tenant, agent)
        self._report(skipped)
        self.stats.silent_closed += 1
        log.info(
            "closed the open intervals of a silent agent",
            extra={"tenant": tenant, "agent_id": agent, "closed_at": str(closed_at)},
        )

    def _open_agents(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return intervals_store.open_agents(conn)

    def _last_event(self, tenant: str, agent: str) -> datetime | None:
        with self.engine.connect() as conn:
            return intervals_store.last_event_at(conn, tenant, agent)

    def _close(self, tenant: str, agent: str) -> tuple[datetime | None, list[SkippedRow]]:
        skipped: list[SkippedRow] = []
        with self.engine.begin() as conn:
            closed = intervals_store.close_silent(
                conn, tenant, agent, self.settings.incident_merge_s, skipped=skipped
            )
        return closed, skipped

    async def _database(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread; a lost database is :class:`RetryLater`.

        Any other error (a database error, a defect, a value out of range) is logged in one
        line and raised as :class:`BuildSkipped`: the events are stored, and the agent's next
        batch or the silence pass rebuilds the same window.
        """
        try:
            return await asyncio.to_thread(fn, *args)
        except DATABASE_LOST as exc:
            raise RetryLater(f"database unavailable while building: {exc}") from exc
        except Exception as exc:
            log.error(
                "could not build; skipped until the agent's next events",
                extra={"error": describe(exc), "call": fn.__name__, "call_args": repr(args)},
            )
            self.stats.failed += 1
            raise BuildSkipped(fn.__name__) from exc


def build_consumer(settings: ServerSettings, engine: Engine, redis: Any) -> StreamConsumer[BuildHandler]:
    """The builder: the stream consumer in group ``build`` with the build handler and the silence hook."""
    handler = BuildHandler(settings, engine, redis)
    silence = Periodic("silence", settings.builder_reconcile_s, handler.reconcile_silence)
    return StreamConsumer(settings, redis, BUILD_GROUP, handler, hooks=[silence])
