"""The persistence handler: each batch of stream events -> ``event`` rows, in one transaction.

Run by the one stream consumer (:class:`~workers.consumer.StreamConsumer`) in
group ``persist``; several workers share the group (distinct consumer names).
(tenant, event id) is the primary key, so an entry handled twice (claimed after a
crash) is stored once, and tenants never collide on an id. The SQL is :mod:`workers.persist_store`.

* a batch is committed in one transaction (COPY on PostgreSQL, insert-or-ignore
  on SQLite), in a thread;
* the database unavailable (any error the database reports but a refused value):
  :class:`RetryLater`;
* a value the database refuses: the batch is stored row by row and the refused
  rows are :class:`PoisonEntries` with the database's reason;
* a value that cannot even be sent (SQLite: an integer past 64 bits, a date that
  leaves the calendar in UTC): raised as it is, and the consumer isolates the entry
  (:mod:`workers.isolation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.settings import ServerSettings
from realtime import keys
from workers.consumer import StreamConsumer, utcnow
from workers.handling import EntryKey, Message, Periodic, PoisonEntries, RetryLater
from workers.persist_store import copy_batch, persist_batch, to_row
from workers.trim import TrimPolicy
from workers.trim_store import StreamTrimmer

log = logging.getLogger(__name__)


@dataclass
class PersistStats:
    inserted: int = 0
    duplicates: int = 0


async def commit(write: Callable[[], int]) -> int:
    """``write`` (one transaction) in a thread; a refused value raises as is, a database failure is transient.

    Errors that do not come from the database (a value the driver cannot send) raise as they are.
    """
    try:
        return await asyncio.to_thread(write)
    except (DataError, IntegrityError):
        raise
    except (DBAPIError, DisconnectionError, PoolTimeoutError) as exc:
        raise RetryLater(f"database write failed: {exc}") from exc


class PersistHandler:
    """Stores every event of a batch once (insert-or-ignore on (tenant, event id))."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stats = PersistStats()

    def counts(self) -> Mapping[str, int]:
        return asdict(self.stats)

    async def handle(self, batch: Sequence[Message]) -> None:
        rejected = await self.store(batch)
        if rejected:
            raise PoisonEntries(rejected)

    async def store(self, batch: Sequence[Message]) -> dict[EntryKey, str]:
        """Commit the batch's rows; returns the entries the database refused (entry key -> reason)."""
        if not batch:
            return {}
        now = utcnow()
        events = [m.event for m in batch]
        try:
            if self.engine.dialect.name == "postgresql":
                inserted = await commit(partial(copy_batch, self.engine, events, now))
            else:
                inserted = await commit(partial(persist_batch, self.engine, [to_row(e, now) for e in events]))
        except (DataError, IntegrityError) as exc:
            rows = [to_row(event, now) for event in events]
            log.warning(
                "database rejected the batch; storing one by one",
                extra={"error": str(exc.orig), "rows": len(rows)},
            )
            return await self._store_one_by_one(batch, rows)
        self.stats.inserted += inserted
        self.stats.duplicates += len(batch) - inserted
        return {}

    async def _store_one_by_one(
        self, batch: Sequence[Message], rows: list[dict[str, Any]]
    ) -> dict[EntryKey, str]:
        rejected: dict[EntryKey, str] = {}
        for message, row in zip(batch, rows, strict=True):
            try:
                inserted = await commit(partial(persist_batch, self.engine, [row]))
            except (DataError, IntegrityError) as exc:
                rejected[message.entry.key] = f"database rejected the event: {str(exc.orig).strip()}"
                continue
            self.stats.inserted += inserted
            self.stats.duplicates += 1 - inserted
        return rejected


def persist_consumer(settings: ServerSettings, engine: Engine, redis: Any) -> StreamConsumer[PersistHandler]:
    """A persistence worker: the stream consumer in group ``persist`` with the persistence handler,
    and the trim pass over every tenant's streams as its hook ``trim`` (:mod:`workers.trim`)."""
    trimmer = StreamTrimmer(TrimPolicy.from_settings(settings), redis)
    trim = Periodic("trim", settings.trim_interval_s, trimmer.run)
    return StreamConsumer(settings, redis, keys.PERSIST_GROUP, PersistHandler(engine), hooks=[trim])
