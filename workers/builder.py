"""The builder: tenant event streams -> duty / presence / task intervals and incidents.

Design: a consumer group of its own (``build``) on every tenant's event stream,
running the persistence worker's loop (:class:`~workers.consumer.PersistWorker`:
tenant discovery, own-pending replay at start, XAUTOCLAIM, dead letters, XACK
after commit). For each batch the builder

1. inserts-or-ignores the batch's events itself (the event id is the primary
   key), so it never waits for, or races with, the ``persist`` group: when it
   builds, every event of the batch is in the ``event`` table;
2. per agent, rebuilds the intervals from the latest duty start at or before the
   batch's earliest event (:func:`workers.intervals.window_start`), and the
   incidents the batch's incident events can join, from the ``event`` table, in
   one transaction per agent (:mod:`workers.rebuild`);
3. XACKs the entries after those commits.

Exactly-once effect from at-least-once delivery: rows are recomputed from the
stored events, never incremented, so an entry delivered twice (claimed after a
crash, replayed) rebuilds the same rows; late and out-of-order events (offline
spools) simply widen the rebuilt window, and duplicates are ignored by the event
id. Run one builder process per deployment (several would rebuild the same agent
concurrently); a restarted builder resumes from its pending entries.

Silence (open intervals reconciled at start-up and every ``builder_reconcile_s``):
an agent with open intervals or incidents that is offline in the live state
(or has none) and was last seen (or last sent an event) ``builder_silence_s`` ago
has them closed at its last event (``closed_by="silence"``). An agent whose session
is live keeps them open: its states are sent on change only, so a long quiet
``present`` is real. When a silent agent's spooled events arrive later, the
rebuild reopens and continues its intervals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from core.settings import ServerSettings
from realtime import live
from realtime.protocol import IncidentEvent, LiveState, StreamEvent
from workers import rebuild
from workers.consumer import Entry, PersistWorker, Stopped

log = logging.getLogger(__name__)

BUILD_GROUP = "build"
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
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


def build_agent(engine: Engine, work: AgentWork, merge_window_s: float) -> None:
    """Rebuild one agent's intervals and incidents in one transaction (blocking)."""
    with engine.begin() as conn:
        rebuild.rebuild_intervals(conn, work.tenant, work.agent, work.earliest)
        if work.incidents:
            rebuild.rebuild_incidents(conn, work.tenant, work.agent, dict(work.incidents), merge_window_s)


@dataclass
class BuildStats:
    agents_built: int = 0
    silent_closed: int = 0
    failed: int = 0


class BuilderWorker(PersistWorker):
    """The persistence worker's loop in group ``build``, building after it stores."""

    def __init__(self, settings: ServerSettings, engine: Engine, redis: Any) -> None:
        super().__init__(settings, engine, redis)
        self.group = BUILD_GROUP
        self.build_stats = BuildStats()
        self._next_silence = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        await super().run(stop)
        log.info("builder stopped", extra={"worker": self.name, **asdict(self.build_stats)})

    async def read_new(self) -> None:
        now = time.monotonic()
        if now >= self._next_silence:
            await self.reconcile_silence()
            self._next_silence = now + self.settings.builder_reconcile_s
        await super().read_new()

    async def store(
        self, good: Sequence[tuple[Entry, StreamEvent]]
    ) -> tuple[list[Entry], list[tuple[Entry, str]]]:
        stored, rejected = await super().store(good)
        by_id = {entry[1]: event for entry, event in good}
        for work in plan_work([by_id[entry[1]] for entry in stored]):
            await self._retrying(build_agent, self.engine, work, self.settings.incident_merge_s)
            self.build_stats.agents_built += 1
        return stored, rejected

    async def reconcile_silence(self) -> None:
        """Close the open intervals and incidents of agents that went silent."""
        agents = await asyncio.to_thread(self._open_agents)
        now = datetime.now(UTC)
        for tenant, agent in agents:
            state = await live.load(self.redis, tenant, agent)
            last = await asyncio.to_thread(self._last_event, tenant, agent)
            if last is None or not is_silent(state, last, now, self.settings.builder_silence_s):
                continue
            closed_at = await self._retrying(self._close, tenant, agent)
            self.build_stats.silent_closed += 1
            log.info(
                "closed the open intervals of a silent agent",
                extra={"tenant": tenant, "agent_id": agent, "closed_at": str(closed_at)},
            )

    def _open_agents(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return rebuild.open_agents(conn)

    def _last_event(self, tenant: str, agent: str) -> datetime | None:
        with self.engine.connect() as conn:
            return rebuild.last_event_at(conn, tenant, agent)

    def _close(self, tenant: str, agent: str) -> datetime | None:
        with self.engine.begin() as conn:
            return rebuild.close_silent(conn, tenant, agent, self.settings.incident_merge_s)

    async def _retrying(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` in a thread; a lost database is retried until stop is set.

        Any other database error is logged and skipped (None): the events are stored,
        and the agent's next batch or the silence pass rebuilds the same window.
        """
        backoff = RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except OperationalError as exc:
                log.error(
                    "database unavailable while building; retrying",
                    extra={"worker": self.name, "error": str(exc), "retry_in_s": backoff},
                )
                if self._stop.is_set():
                    raise Stopped from exc
                await self._pause(backoff)
                if self._stop.is_set():
                    raise Stopped from exc
                backoff = min(backoff * 2, RETRY_MAX_S)
            except SQLAlchemyError as exc:
                log.error(
                    "could not build; skipped until the agent's next events",
                    extra={"worker": self.name, "error": str(exc), "call": fn.__name__, "args": repr(args)},
                )
                self.build_stats.failed += 1
                return None


def run_builder(settings: ServerSettings) -> None:
    """Run one builder until SIGINT/SIGTERM; the batch in hand is built and acked before exit.

    Raises ConfigError without ``TELEWORK_REDIS_URL`` and storage.db.SchemaError on an
    un-migrated database.
    """
    from workers.run import run_consumer

    run_consumer(settings, BuilderWorker)
