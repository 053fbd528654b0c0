"""The SQL of the persistence handler (:mod:`workers.persist`): stream events -> ``event`` rows.

Inserted in one transaction, idempotently. ``to_row`` is pure. ``persist_batch``:
one ``INSERT ... ON CONFLICT DO NOTHING`` executed for many rows (the driver's
executemany: psycopg 3 pipelines it, sqlite3 steps one prepared statement) on the
key (tenant, event id), so an event delivered twice is stored once (and another
tenant's event with the same id is stored too), and the summed rowcount tells the
caller how many rows were new. (``RETURNING`` would force SQLAlchemy's
multi-row VALUES rendering, which psycopg parses 5x slower for 1,000-row pages.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.dml import Insert

from realtime.protocol import StreamEvent
from storage.activity import EventRecord

log = logging.getLogger(__name__)

EVENT_TABLE = EventRecord.__table__  # type: ignore[attr-defined]
# (tenant_id, id): an event is stored once per tenant
CONFLICT_KEY = [c.name for c in EVENT_TABLE.primary_key.columns]


def to_row(entry: StreamEvent, stored_at: datetime) -> dict[str, Any]:
    """The ``event`` row of one stream entry; datetimes normalised to UTC (SQLite keeps no offset)."""
    event = entry.event
    return {
        "id": str(event.id),
        "tenant_id": entry.tenant,
        "agent_id": entry.agent_id,
        "seq": event.seq,
        "ts": event.ts.astimezone(UTC),
        "type": event.type,
        "payload": event.payload.model_dump(mode="json"),
        "session_id": entry.session_id,
        "received_at": entry.received_at.astimezone(UTC),
        "stored_at": stored_at.astimezone(UTC),
    }


def insert_ignore(dialect_name: str) -> Insert:
    """``INSERT INTO event ... ON CONFLICT (tenant_id, id) DO NOTHING`` for the engine's dialect."""
    if dialect_name == "postgresql":
        stmt: Insert = postgresql.insert(EVENT_TABLE).on_conflict_do_nothing(index_elements=CONFLICT_KEY)
    elif dialect_name == "sqlite":
        stmt = sqlite.insert(EVENT_TABLE).on_conflict_do_nothing(index_elements=CONFLICT_KEY)
    else:
        raise ValueError(f"expected a postgresql or sqlite engine, got dialect {dialect_name!r}")
    # rowcount of an executemany is only kept on request (SQLAlchemy 2.0.28+).
    return stmt.execution_options(preserve_rowcount=True)


COPY_COLUMNS = (
    "id",
    "tenant_id",
    "agent_id",
    "seq",
    "ts",
    "type",
    "payload",
    "session_id",
    "received_at",
    "stored_at",
)
COPY_SQL = f"COPY event ({', '.join(COPY_COLUMNS)}) FROM STDIN"


def copy_record(entry: StreamEvent, stored_at: datetime) -> tuple[Any, ...]:
    """The ``event`` row of one stream entry in COPY_COLUMNS order (payload as JSON text)."""
    event = entry.event
    return (
        str(event.id),
        entry.tenant,
        entry.agent_id,
        event.seq,
        event.ts,
        event.type,
        event.payload.model_dump_json(),
        entry.session_id,
        entry.received_at,
        stored_at,
    )


def copy_batch(engine: Engine, entries: Sequence[StreamEvent], stored_at: datetime) -> int:
    """PostgreSQL: COPY the entries straight into ``event``; returns how many were new.

    COPY is several times cheaper than an INSERT per row, but cannot skip ids
    already stored. So it runs in a savepoint: when it fails (a (tenant, id) stored
    by an earlier delivery, or a value the table refuses) the savepoint is rolled back
    and the same transaction falls back to :func:`persist_batch`'s
    insert-or-ignore, whose errors the worker handles row by row.
    """
    if not entries:
        return 0
    import psycopg

    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with conn.begin_nested(), cursor.copy(COPY_SQL) as copy:
                for entry in entries:
                    copy.write_row(copy_record(entry, stored_at))
            return len(entries)
        except psycopg.Error as exc:
            log.info("COPY refused; inserting with ON CONFLICT DO NOTHING", extra={"why": str(exc).strip()})
        result = conn.execute(insert_ignore("postgresql"), [to_row(e, stored_at) for e in entries])
        return int(result.rowcount)


def persist_batch(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` in one transaction, ignoring (tenant, id) already stored; returns how many were new."""
    if not rows:
        return 0
    stmt = insert_ignore(engine.dialect.name)
    with engine.begin() as conn:
        result = conn.execute(stmt, list(rows))
        inserted = result.rowcount
    if inserted < 0:
        raise RuntimeError(f"expected the driver to report inserted rows, got rowcount {inserted}")
    return inserted
