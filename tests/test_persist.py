"""Pure parts of the persistence worker: stream event -> row, entry -> persist or dead-letter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col

from core.config import ConfigError
from core.settings import ServerSettings
from realtime.protocol import (
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    StreamEvent,
    encode,
    new_event_id,
)
from storage.activity import EventRecord
from storage.purge import delete_in_batches
from workers.dead_letter import DeadLetterReason, dead_letter, decode
from workers.persist_store import copy_batch, persist_batch, to_row
from workers.run import run_worker

JST = timezone(timedelta(hours=9))


def stream_event(seq: int = 1, tenant: str = "acme", ts: datetime | None = None) -> StreamEvent:
    when = ts or datetime(2026, 11, 25, 9, 0, 0, tzinfo=JST)
    return StreamEvent(
        tenant=tenant,
        agent_id="pc-1",
        session_id="sess-1",
        received_at=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC),
        event=IncidentEvent(
            id=new_event_id(),
            seq=seq,
            ts=when,
            payload=IncidentPayload(kind="peeking", phase="start", evidence=["a.jpg"]),
        ),
    )


def test_to_row_maps_every_column_in_utc():
    """to_row fills every EventRecord column; datetimes become UTC, the payload stays JSON data."""
    entry = stream_event(seq=7)
    stored = datetime(2026, 11, 25, 10, 0, 0, tzinfo=JST)
    row = to_row(entry, stored)
    assert row == {
        "id": str(entry.event.id),
        "tenant_id": "acme",
        "agent_id": "pc-1",
        "seq": 7,
        "ts": datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC),
        "type": "incident",
        "payload": {"kind": "peeking", "phase": "start", "evidence": ["a.jpg"], "trace": None},
        "session_id": "sess-1",
        "received_at": datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC),
        "stored_at": datetime(2026, 11, 25, 1, 0, 0, tzinfo=UTC),
    }
    assert row["ts"].utcoffset() == timedelta(0)


def _fields(entry: StreamEvent) -> dict[str, str]:
    return {"e": encode(entry)}


def test_decode_accepts_a_valid_entry_as_text_and_bytes():
    """A valid entry decodes to its StreamEvent from a str and from a bytes client."""
    entry = stream_event()
    assert decode(_fields(entry)) == entry
    assert decode({b"e": encode(entry).encode()}) == entry


def test_decode_reasons_name_expected_and_arrived():
    """Each malformed entry gets a reason naming what was expected and what arrived."""
    good = json.loads(encode(stream_event()))
    naive = json.loads(encode(stream_event()))
    naive["event"]["ts"] = "2026-11-25T09:00:00"
    two_bad = json.loads(encode(stream_event()))
    two_bad["tenant"] = "Bad Tenant"
    two_bad["event"]["seq"] = 0
    wrong_type = dict(good, event=dict(good["event"], type="lunch"))
    cases: dict[str, tuple[Mapping[Any, Any], str]] = {
        "no e": ({"x": "1", "y": "2"}, "entry has no field 'e'; fields: x, y"),
        "deleted": ({}, "entry has no fields (deleted or trimmed from the stream before it was persisted)"),
        "not json": (
            {"e": "{not json"},
            "field 'e' is not valid JSON: Invalid JSON: key must be a string at line 1 column 2",
        ),
        "not utf-8": (
            {b"e": b"\xff{}"},
            "field 'e' is not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 0: "
            "invalid start byte",
        ),
        "not object": ({"e": "[1]"}, "invalid StreamEvent: Input should be an object"),
        "naive ts": (
            {"e": json.dumps(naive)},
            "invalid StreamEvent: event.ts: Input should have timezone info",
        ),
        "two errors": (
            {"e": json.dumps(two_bad)},
            "invalid StreamEvent: tenant: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$' "
            "(and 1 more error)",
        ),
        "event type": (
            {"e": json.dumps(wrong_type)},
            "invalid StreamEvent: event: Input tag 'lunch' found using 'type' does not match any of the "
            "expected tags: 'state', 'duty', 'task', 'incident', 'gap', 'usage'",
        ),
    }
    for name, (fields, reason) in cases.items():
        assert decode(fields) == DeadLetterReason(reason), name


def test_dead_letter_keeps_fields_as_text():
    """The dead letter carries the stream, entry id, reason, deliveries and the original fields as text."""
    at = datetime(2026, 11, 25, tzinfo=UTC)
    letter = dead_letter("tw:{acme}:events", "1-0", {b"e": b"\xff"}, "why", 2, at)
    assert (letter.stream, letter.entry_id, letter.reason, letter.deliveries) == (
        "tw:{acme}:events",
        "1-0",
        "why",
        2,
    )
    assert letter.fields == {"e": "\\xff"}
    assert letter.failed_at == at


def test_persist_batch_inserts_once_and_counts_new_rows(engine):
    """persist_batch stores each event id once and returns only the newly inserted count."""
    now = datetime.now(UTC)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    rows = [to_row(stream_event(seq=i + 1, tenant=tenant), now) for i in range(50)]
    assert persist_batch(engine, rows) == 50
    extra = [to_row(stream_event(seq=100, tenant=tenant), now)]
    assert persist_batch(engine, rows[10:20] + extra) == 1
    assert persist_batch(engine, []) == 0
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM event WHERE tenant_id = :t"), {"t": tenant}).scalar()
        payload = conn.execute(
            text("SELECT payload FROM event WHERE seq = 100 AND tenant_id = :t"), {"t": tenant}
        )
        stored = payload.scalar()
    assert count == 51
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == {"kind": "peeking", "phase": "start", "evidence": ["a.jpg"], "trace": None}


def test_state_event_row_type():
    """A state event's row has type 'state' and its payload as a dict."""
    now = datetime.now(UTC)
    entry = StreamEvent(
        tenant="acme",
        agent_id="pc-1",
        session_id="s",
        received_at=now,
        event=StateEvent(id=new_event_id(), seq=1, ts=now, payload=StatePayload(state="away")),
    )
    row = to_row(entry, now)
    assert (row["type"], row["payload"]) == ("state", {"state": "away", "trace": None, "evidence": []})


def test_run_worker_requires_redis_url(tmp_path):
    """Without TELEWORK_REDIS_URL the worker refuses to start and says how to get a Redis."""
    with pytest.raises(ConfigError) as info:
        run_worker(ServerSettings(data_dir=tmp_path))
    assert info.value.key == "TELEWORK_REDIS_URL"
    assert "`telework up` starts an embedded Redis" in str(info.value)


def _same_id_rows(event_id: str, tenants: list[str]) -> list[StreamEvent]:
    now = datetime.now(UTC)
    return [
        StreamEvent(
            tenant=tenant,
            agent_id="pc-1",
            session_id="s",
            received_at=now,
            event=StateEvent(id=uuid.UUID(event_id), seq=1, ts=now, payload=StatePayload(state="away")),
        )
        for tenant in tenants
    ]


def _stored(engine, event_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tenant_id, id FROM event WHERE id = :i ORDER BY tenant_id"), {"i": event_id}
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_event_identity_is_per_tenant_in_insert_or_ignore(engine):
    """Two tenants with the same event id are both stored; the same tenant twice is stored once."""
    event_id = str(new_event_id())
    a, b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    rows = [to_row(e, now) for e in _same_id_rows(event_id, [a, b, a])]
    assert persist_batch(engine, rows) == 2
    assert persist_batch(engine, rows[:1]) == 0
    assert _stored(engine, event_id) == [(a, event_id), (b, event_id)]


def test_event_identity_is_per_tenant_in_copy(engine):
    """PostgreSQL COPY: another tenant's same id is new; a repeat falls back to insert-or-ignore."""
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    event_id = str(new_event_id())
    a, b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    assert copy_batch(engine, _same_id_rows(event_id, [a]), now) == 1
    assert copy_batch(engine, _same_id_rows(event_id, [b]), now) == 1
    assert copy_batch(engine, _same_id_rows(event_id, [a, b]), now) == 0
    assert _stored(engine, event_id) == [(a, event_id), (b, event_id)]


async def test_commit_retries_database_failures_and_raises_the_rest():
    """A failing database is RetryLater; an error raised before anything reached it is raised as it is."""
    from sqlalchemy.exc import OperationalError, StatementError

    from workers.handling import RetryLater
    from workers.persist import commit

    def database_down() -> int:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    def cannot_send() -> int:
        raise StatementError("could not bind", "INSERT", {}, OverflowError("int too large"))

    with pytest.raises(RetryLater, match=r"database write failed: .*connection refused"):
        await commit(database_down)
    with pytest.raises(StatementError, match="could not bind"):
        await commit(cannot_send)


def test_a_batched_delete_of_one_tenant_spares_another_tenant_with_the_same_event_id(engine: Any) -> None:
    """Events are keyed by (tenant, id): purging tenant a's rows leaves tenant b's same-id row."""
    shared = stream_event()
    other = shared.model_copy(update={"tenant": "beta"})
    now = datetime.now(UTC)
    assert persist_batch(engine, [to_row(shared, now), to_row(other, now)]) == 2
    deleted = delete_in_batches(
        engine, EventRecord, col(EventRecord.id), col(EventRecord.tenant_id) == "acme", 10
    )
    with engine.connect() as conn:
        left = conn.execute(text("SELECT tenant_id, id FROM event")).all()
    assert (deleted, left) == (1, [("beta", str(shared.event.id))])
